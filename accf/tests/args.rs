use listenq_accf::{
    parse_af_arg, ArgError, Config, FilterKind, HttpMethods, ProxyMode, TimeoutAction,
    TimeoutDefaults,
};

#[test]
fn empty_is_stock_for_every_filter() {
    for k in FilterKind::ALL {
        assert_eq!(parse_af_arg(k, b""), Ok(Config::stock(k)));
        // struct accept_filter_arg is zero-filled by most callers.
        assert_eq!(parse_af_arg(k, &[0; 240]), Ok(Config::stock(k)));
    }
    let s = Config::stock(FilterKind::Http);
    assert!(s.http_parse_version && !s.http_h2 && s.http_methods == HttpMethods::Stock);
    assert!(!Config::stock(FilterKind::Tls).tls_clienthello);
    assert_eq!(s.proxy, ProxyMode::Off);
    assert_eq!(s.hold_timeout_ms, None);
}

#[test]
fn index_is_the_place_in_all_and_names_are_the_stock_ones() {
    for (i, k) in FilterKind::ALL.into_iter().enumerate() {
        assert_eq!(k.index(), i);
        assert_eq!(FilterKind::from_index(i), Some(k));
        assert_eq!(k.c_name().to_bytes(), k.name().as_bytes());
    }
    assert_eq!(FilterKind::from_index(FilterKind::ALL.len()), None);
    let names: Vec<&str> = FilterKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(names, ["dataready", "httpready", "dnsready", "tlsready"]);
}

#[test]
fn every_option() {
    let http = |a: &str| parse_af_arg(FilterKind::Http, a.as_bytes());
    let c = http("proxy,timeout=1500,ontimeout=drop,methods=all,h2,parsehttpversion=0").unwrap();
    assert_eq!(c.proxy, ProxyMode::Optional);
    assert_eq!(c.hold_timeout_ms, Some(1500));
    assert_eq!(c.on_timeout, Some(TimeoutAction::Drop));
    assert_eq!(c.http_methods, HttpMethods::All);
    assert!(c.http_h2 && !c.http_parse_version);
    assert_eq!(http("proxy=off").unwrap().proxy, ProxyMode::Off);
    assert_eq!(http("proxy=optional").unwrap().proxy, ProxyMode::Optional);
    assert_eq!(http("proxy=required").unwrap().proxy, ProxyMode::Required);
    assert_eq!(http("timeout=0").unwrap().hold_timeout_ms, Some(0));
    assert_eq!(
        http("timeout=4294967295").unwrap().hold_timeout_ms,
        Some(u32::MAX)
    );
    assert_eq!(
        http("ontimeout=deliver").unwrap().on_timeout,
        Some(TimeoutAction::Deliver)
    );
    assert_eq!(
        http("methods=stock").unwrap().http_methods,
        HttpMethods::Stock
    );
    assert!(http("parsehttpversion=1").unwrap().http_parse_version);
    let t = parse_af_arg(FilterKind::Tls, b"clienthello,proxy=required\0garbage").unwrap();
    assert!(t.tls_clienthello);
    assert_eq!(t.proxy, ProxyMode::Required);
}

#[test]
fn errors() {
    use ArgError::*;
    for (kind, arg, err) in [
        (FilterKind::Http, &b"bogus"[..], UnknownOption),
        (FilterKind::Http, b"Proxy", UnknownOption),
        (FilterKind::Http, b"proxy=yes", BadValue),
        (FilterKind::Http, b"timeout=", BadValue),
        (FilterKind::Http, b"timeout=-1", BadValue),
        (FilterKind::Http, b"timeout=+1", BadValue),
        (FilterKind::Http, b"timeout=0x10", BadValue),
        (FilterKind::Http, b"timeout=4294967296", BadValue),
        (FilterKind::Http, b"timeout= 1", BadValue),
        (FilterKind::Http, b"ontimeout=reset", BadValue),
        (FilterKind::Http, b"methods=ALL", BadValue),
        (FilterKind::Http, b"parsehttpversion=2", BadValue),
        (FilterKind::Http, b"timeout", MissingValue),
        (FilterKind::Http, b"methods", MissingValue),
        (FilterKind::Http, b"h2=1", UnexpectedValue),
        (FilterKind::Tls, b"clienthello=", UnexpectedValue),
        (FilterKind::Http, b",", EmptyOption),
        (FilterKind::Http, b"h2,", EmptyOption),
        (FilterKind::Http, b"h2,,proxy", EmptyOption),
        (FilterKind::Http, b"proxy,proxy=off", Duplicate),
        (FilterKind::Tls, b"h2", WrongFilter),
        (FilterKind::Dns, b"methods=all", WrongFilter),
        (FilterKind::Http, b"clienthello", WrongFilter),
        (FilterKind::Data, b"parsehttpversion=1", WrongFilter),
    ] {
        assert_eq!(
            parse_af_arg(kind, arg),
            Err(err),
            "{:?}",
            String::from_utf8_lossy(arg)
        );
        assert!(!err.as_str().is_empty());
    }
}

#[test]
fn length_limit_is_the_kernel_field_less_its_nul() {
    let mut arg = b"timeout=1".to_vec();
    arg.resize(239, b'0');
    assert_eq!(
        parse_af_arg(FilterKind::Data, &arg),
        Err(ArgError::BadValue)
    );
    arg.push(b'0');
    assert_eq!(parse_af_arg(FilterKind::Data, &arg), Err(ArgError::TooLong));
    arg.push(0);
    assert_eq!(parse_af_arg(FilterKind::Data, &arg), Err(ArgError::TooLong));
    let mut ok = b"timeout=".to_vec();
    ok.resize(239, b'0');
    ok.push(b'7');
    assert_eq!(parse_af_arg(FilterKind::Data, &ok), Err(ArgError::TooLong));
    ok.pop();
    *ok.last_mut().unwrap() = b'7';
    assert_eq!(
        parse_af_arg(FilterKind::Data, &ok).unwrap().hold_timeout_ms,
        Some(7)
    );
}

/// listenq(4): `timeout=0` is no limit even when the kernel default sets
/// one; `ontimeout=` alone applies to the default limit; without either the
/// defaults apply.
#[test]
fn timeout_options_against_the_defaults() {
    use TimeoutAction::{Deliver, Drop};
    let limit = |a: &str, ms: u32, action: TimeoutAction| {
        parse_af_arg(FilterKind::Data, a.as_bytes())
            .unwrap()
            .hold_limit(TimeoutDefaults { ms, action })
    };
    assert_eq!(limit("", 0, Drop), None);
    assert_eq!(limit("", 300, Deliver), Some((300, Deliver)));
    assert_eq!(limit("", 300, Drop), Some((300, Drop)));
    assert_eq!(limit("timeout=0", 300, Deliver), None);
    assert_eq!(limit("timeout=0,ontimeout=drop", 300, Deliver), None);
    assert_eq!(limit("ontimeout=drop", 300, Deliver), Some((300, Drop)));
    assert_eq!(limit("ontimeout=deliver", 300, Drop), Some((300, Deliver)));
    assert_eq!(limit("ontimeout=drop", 0, Deliver), None);
    assert_eq!(limit("timeout=50", 0, Drop), Some((50, Drop)));
    assert_eq!(limit("timeout=50", 300, Deliver), Some((50, Deliver)));
    assert_eq!(
        limit("timeout=50,ontimeout=drop", 300, Deliver),
        Some((50, Drop))
    );
}

#[test]
fn eviction_policy_options() {
    use listenq_accf::EvictPolicy;
    for k in FilterKind::ALL {
        let c = parse_af_arg(k, b"").unwrap();
        assert_eq!(
            (c.evict, c.prefix4, c.prefix6, c.per_source),
            (EvictPolicy::Oldest, 32, 64, 0)
        );
        let c = parse_af_arg(k, b"evict=fair").unwrap();
        assert_eq!(c.evict, EvictPolicy::Fair);
        let c = parse_af_arg(k, b"evict=fair,prefix4=24,prefix6=48,persource=8").unwrap();
        assert_eq!((c.prefix4, c.prefix6, c.per_source), (24, 48, 8));
        assert_eq!(
            parse_af_arg(k, b"evict=oldest").unwrap().evict,
            EvictPolicy::Oldest
        );
    }
    let bad: [(&[u8], ArgError); 9] = [
        (b"evict=newest", ArgError::BadValue),
        (b"evict", ArgError::MissingValue),
        (b"evict=fair,prefix4=33", ArgError::BadValue),
        (b"evict=fair,prefix6=129", ArgError::BadValue),
        (b"evict=fair,persource=-1", ArgError::BadValue),
        (b"evict=fair,persource", ArgError::MissingValue),
        (b"prefix4=24", ArgError::NeedsFair),
        (b"evict=oldest,persource=3", ArgError::NeedsFair),
        (b"evict=fair,evict=fair", ArgError::Duplicate),
    ];
    for (arg, e) in bad {
        assert_eq!(
            parse_af_arg(FilterKind::Http, arg),
            Err(e),
            "{}",
            String::from_utf8_lossy(arg)
        );
    }
    assert_eq!(
        ArgError::NeedsFair.as_str(),
        "prefix4, prefix6 and persource need evict=fair"
    );
}
