/*
 * insnprof: a QEMU TCG plugin that counts the instructions a guest
 * executes, per translation block, and writes "vaddr ninsns count" lines
 * when QEMU exits. tests/vm/profile.sh turns two such files into
 * instructions per connection and function.
 *
 * QEMU does not install its plugin header, so the few declarations this
 * uses are spelled out below, as plugin API version 1 (QEMU 4.2 to 8.x)
 * defines them.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef uint64_t qemu_plugin_id_t;
typedef struct qemu_info_t qemu_info_t;
struct qemu_plugin_tb;
enum qemu_plugin_op { QEMU_PLUGIN_INLINE_ADD_U64 };
typedef void (*qemu_plugin_vcpu_tb_trans_cb_t)(qemu_plugin_id_t,
    struct qemu_plugin_tb *);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t, void *);
void	qemu_plugin_register_vcpu_tb_trans_cb(qemu_plugin_id_t,
	    qemu_plugin_vcpu_tb_trans_cb_t);
void	qemu_plugin_register_vcpu_tb_exec_inline(struct qemu_plugin_tb *,
	    enum qemu_plugin_op, void *, uint64_t);
size_t	qemu_plugin_tb_n_insns(const struct qemu_plugin_tb *);
uint64_t qemu_plugin_tb_vaddr(const struct qemu_plugin_tb *);
void	qemu_plugin_register_atexit_cb(qemu_plugin_id_t,
	    qemu_plugin_udata_cb_t, void *);

__attribute__((visibility("default"))) int qemu_plugin_version = 1;

/* One block: where it starts, its length, how often it ran. */
struct block {
	uint64_t	vaddr;
	uint64_t	ninsns;
	uint64_t	count;
};

/* Open addressing; the bench's guest translates far fewer blocks. */
#define NBLOCKS	(1u << 22)
static struct block *blocks;
static const char *out = "insnprof.txt";

static struct block *
block_of(uint64_t va, uint64_t n)
{
	uint64_t h = va * 0x9E3779B97F4A7C15ull ^ n * 0xff51afd7ed558ccdull;
	uint32_t i, probes;

	for (i = (uint32_t)(h >> 40) & (NBLOCKS - 1), probes = 0;
	    probes < NBLOCKS; i = (i + 1) & (NBLOCKS - 1), probes++) {
		struct block *b = &blocks[i];

		if (b->ninsns == 0) {
			b->vaddr = va;
			b->ninsns = n;
			return (b);
		}
		if (b->vaddr == va && b->ninsns == n)
			return (b);
	}
	return (NULL);
}

static void
translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	struct block *b;

	(void)id;
	b = block_of(qemu_plugin_tb_vaddr(tb), qemu_plugin_tb_n_insns(tb));
	if (b != NULL)
		qemu_plugin_register_vcpu_tb_exec_inline(tb,
		    QEMU_PLUGIN_INLINE_ADD_U64, &b->count, 1);
}

static void
done(qemu_plugin_id_t id, void *p)
{
	FILE *f;
	uint32_t i;

	(void)id;
	(void)p;
	if ((f = fopen(out, "w")) == NULL)
		return;
	for (i = 0; i < NBLOCKS; i++)
		if (blocks[i].count != 0)
			fprintf(f, "%llx %llu %llu\n",
			    (unsigned long long)blocks[i].vaddr,
			    (unsigned long long)blocks[i].ninsns,
			    (unsigned long long)blocks[i].count);
	fclose(f);
}

__attribute__((visibility("default"))) int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc,
    char **argv)
{
	int i;

	(void)info;
	for (i = 0; i < argc; i++)
		if (strncmp(argv[i], "out=", 4) == 0)
			out = argv[i] + 4;
	if ((blocks = calloc(NBLOCKS, sizeof(*blocks))) == NULL)
		return (-1);
	qemu_plugin_register_vcpu_tb_trans_cb(id, translated);
	qemu_plugin_register_atexit_cb(id, done, NULL);
	return (0);
}
