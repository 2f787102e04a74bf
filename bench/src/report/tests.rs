use super::*;

#[test]
fn percentiles_nearest_rank() {
    let v: Vec<u64> = (1..=100).collect();
    assert_eq!(percentile(&v, 50.0), Some(50));
    assert_eq!(percentile(&v, 99.0), Some(99));
    assert_eq!(percentile(&v, 100.0), Some(100));
    assert_eq!(percentile(&[7], 50.0), Some(7));
    assert_eq!(percentile(&[7], 99.0), Some(7));
    assert_eq!(percentile(&[1, 2], 50.0), Some(1));
    assert_eq!(percentile(&[1, 2], 99.0), Some(2));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&v, 0.0), None);
    let mut s = vec![30, 10, 20];
    let r = Record::rtt("x", 8, &mut s, "split");
    assert_eq!((r.p50_ns, r.p99_ns), (Some(20), Some(30)));
}

#[test]
fn rates_and_ratios() {
    let (rate, gbps) = rates(2_000_000, 1000, Duration::from_secs(2));
    assert_eq!(rate, Some(1e6));
    assert_eq!(gbps, Some(1.0));
    assert_eq!(rates(5, 8, Duration::ZERO), (None, None));
    assert_eq!(ratio(Some(3.0), Some(2.0)), Some(1.5));
    assert_eq!(ratio(Some(3.0), Some(0.0)), None);
    assert_eq!(ratio(None, Some(2.0)), None);

    let mk = |b: &str, p50| {
        let mut s = vec![p50];
        Record::rtt(b, 64, &mut s, "split")
    };
    let all = vec![
        mk("spin", 100),
        mk("unix", 4000),
        mk("mem", 400),
        Record::stream("unix", 64, 1000, Duration::from_secs(1), "split"),
        Record::stream("mem", 64, 5000, Duration::from_secs(1), "split"),
    ];
    let q = ratios(&all[2], &all);
    assert_eq!(q.p50_vs_spin, Some(4.0));
    assert_eq!(q.p50_vs_unix, Some(0.1));
    assert_eq!(q.rate_vs_unix, None);
    let q = ratios(&all[4], &all);
    assert_eq!(q.rate_vs_unix, Some(5.0));
    assert_eq!(q.p50_vs_spin, None);
    // No baseline at another size.
    let mut s = vec![5];
    let other = Record::rtt("mem", 8, &mut s, "split");
    assert_eq!(ratios(&other, &all), Ratios::default());
    // Idle-gap round trips compare with the same mode only.
    let gap = |b: &str, p50| {
        let mut s = vec![p50];
        Record::rtt(b, 64, &mut s, "split").with_mode(Mode::RttGap1ms)
    };
    let g = [gap("unix", 8000), gap("shm", 2000)];
    let q = ratios(&g[1], &g);
    assert_eq!((q.p50_vs_unix, q.p50_vs_spin), (Some(0.25), None));
    assert_eq!(ratios(&g[1], &all), Ratios::default());
    for (gap, mode) in
        crate::proto::GAPS
            .iter()
            .zip([Mode::RttGap10us, Mode::RttGap100us, Mode::RttGap1ms])
    {
        assert_eq!(Mode::for_gap(*gap), Some(mode));
    }
    let t = table(&all, "split");
    assert!(t.contains("p50/spin"));
    assert!(t.contains("4.00x"));

    // Hub rows: ratio to shm in a note; costs have no size and no ratios.
    let hubs = vec![
        mk("shm", 1000),
        mk("hub", 1100),
        Record::rtt("hub-attach", 0, &mut [40_000, 50_000], "split").with_mode(Mode::Attach),
    ];
    assert_eq!(ratios(&hubs[2], &hubs), Ratios::default());
    let t = table(&hubs, "split");
    assert!(t.contains("hub p50 / shm p50 (same run): rtt 64 B 1.10x."));
    assert!(t.contains("attach: a peer process"));
    assert!(!t.contains("rtt-gapN"));
}

#[test]
fn json_record_shape() {
    let mut s = vec![100, 200];
    let recs = vec![
        Record::rtt("spin", 8, &mut s, "split"),
        Record::stream("unix", 1024, 10, Duration::from_secs(1), "same")
            .with_peer(Some("iceoryx2")),
        Record::rtt("unix", 8, &mut [5], "split").with_mode(Mode::RttGap100us),
        Record::rtt("hub-attach", 0, &mut [5, 9], "split").with_mode(Mode::Reclaim),
    ];
    let v: serde_json::Value = serde_json::from_str(&to_json(&recs)).expect("valid JSON");
    let arr = v.as_array().expect("an array");
    assert_eq!(arr.len(), 4);
    assert_eq!(arr[3]["mode"], "reclaim");
    assert_eq!(
        (arr[3]["p50_ns"].as_u64(), arr[3]["p99_ns"].as_u64()),
        (Some(5), Some(9))
    );
    assert_eq!(arr[1]["peer"], "iceoryx2");
    assert_eq!(arr[2]["mode"], "rtt-gap100us");
    let mut keys: Vec<&str> = arr[0]
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "backend",
            "gbps",
            "mode",
            "msgs_per_s",
            "p50_ns",
            "p99_ns",
            "peer",
            "placement",
            "size"
        ]
    );
    assert!(arr[0]["peer"].is_null());
    assert_eq!(arr[0]["backend"], "spin");
    assert_eq!(arr[0]["mode"], "rtt");
    assert_eq!(arr[0]["size"], 8);
    assert_eq!(arr[0]["p50_ns"], 100);
    assert_eq!(arr[0]["p99_ns"], 200);
    assert!(arr[0]["msgs_per_s"].is_null());
    assert!(arr[0]["gbps"].is_null());
    assert_eq!(arr[0]["placement"], "split");
    assert_eq!(arr[1]["mode"], "stream");
    assert!(arr[1]["p50_ns"].is_null());
    assert_eq!(arr[1]["msgs_per_s"], 10.0);
    assert_eq!(arr[1]["gbps"], 10.0 * 1024.0 / 1e9);
    assert_eq!(arr[1]["placement"], "same");
}

#[test]
fn medians_over_rounds_and_the_target_check() {
    let rtt = |b: &str, size: usize, p50: u64| Record::rtt(b, size, &mut [p50], "split");
    let stream = |b: &str, msgs: u64| Record::stream(b, 64, msgs, Duration::from_secs(1), "split");
    // Three rounds; the machine was slow in the second one (everything 4x).
    let rounds = vec![
        vec![
            rtt("shm", 8, 400),
            rtt("iox2-poll", 8, 1000),
            stream("shm", 7_000_000),
            stream("iox2-poll", 2_000_000),
        ],
        vec![
            rtt("iox2-poll", 8, 4000),
            rtt("shm", 8, 1600),
            stream("iox2-poll", 500_000),
            stream("shm", 1_750_000),
        ],
        vec![
            rtt("shm", 8, 600),
            rtt("iox2-poll", 8, 1000),
            stream("shm", 5_000_000),
            stream("iox2-poll", 2_000_000),
        ],
    ];
    let m = median_records(&rounds);
    assert_eq!(m.len(), 4);
    assert_eq!((m[0].backend.as_str(), m[0].p50_ns), ("shm", Some(600)));
    assert_eq!(
        (m[1].backend.as_str(), m[1].p50_ns),
        ("iox2-poll", Some(1000))
    );
    assert_eq!(m[2].msgs_per_s, Some(5_000_000.0));
    assert_eq!(m[3].msgs_per_s, Some(2_000_000.0));
    // Ratios are taken within each round: 0.4, 0.4, 0.6 (median 0.4, met);
    // 3.5, 3.5, 2.5 (median 3.5, met).
    let t = target_check(&rounds, false);
    let line = |label: &str| {
        t.lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no line for {label} in {t}"))
            .to_string()
    };
    let l = line("rtt 8 B, both busy: shm / iox2-poll");
    assert!(
        l.contains("median  0.40") && l.contains("met") && l.contains("rounds: 0.40 0.40 0.60"),
        "{l}"
    );
    let l = line("stream 64 B: shm / iox2-poll");
    assert!(l.contains("median  3.50") && l.contains("met"), "{l}");
    // Targets whose cells did not run are left out; no applicable target, no section.
    assert!(!t.contains("iox2-event") && !t.contains("1 MiB"));
    assert_eq!(target_check(&[vec![rtt("spin", 8, 100)]], false), "");
    // A missed target.
    let slow = vec![vec![rtt("shm", 8, 900), rtt("iox2-poll", 8, 1000)]];
    assert!(target_check(&slow, false).contains("missed"));
    // A target across modes divides an idle-gap cell by a back-to-back one.
    let gap = rtt("shm", 8, 30_000).with_mode(Mode::RttGap1ms);
    let t = target_check(&[vec![gap, rtt("eventfd", 8, 40_000)]], false);
    assert!(
        t.contains("gap 1 ms, default spin: shm / eventfd") && t.contains("median  0.75"),
        "{t}"
    );
    assert!(t.contains("missed"), "{t}");
}

#[test]
fn stability_and_one_cpu_clauses() {
    let rtt = |b: &str, p50: u64| Record::rtt(b, 8, &mut [p50], "same");
    let gap = |p50: u64| rtt("shm", p50).with_mode(Mode::RttGap1ms);
    let line = |t: &str, label: &str| {
        t.lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no line for {label} in {t}"))
            .to_string()
    };
    let label = "gap 1 ms, default spin: shm / eventfd";
    let round = |g: u64, e: u64| vec![gap(g), rtt("eventfd", e)];
    // Ratios 0.50 0.50 0.55: the median meets the bound, and the gap cells' spread is
    // (22 - 20) / 20 = 10%.
    let steady = vec![
        round(20_000, 40_000),
        round(20_000, 40_000),
        round(22_000, 40_000),
    ];
    let l = line(&target_check(&steady, false), label);
    assert!(
        l.contains("  met ") && l.contains("spread 10.0% (<= 25%)"),
        "{l}"
    );
    // The same ratios from gap cells of 10, 20 and 30 µs (the baseline moving with them): the
    // median meets the bound, the spread of 100% misses the stability clause.
    let swinging = vec![
        round(10_000, 20_000),
        round(20_000, 40_000),
        round(30_000, 60_000),
    ];
    let l = line(&target_check(&swinging, false), label);
    assert!(
        l.contains("median  0.50") && l.contains("missed (spread)") && l.contains("spread 100.0%"),
        "{l}"
    );
    // Steady cells whose ratio misses the bound (0.80 > 0.6): a good spread does not rescue it.
    let slow = vec![round(32_000, 40_000), round(32_000, 40_000)];
    let l = line(&target_check(&slow, false), label);
    assert!(
        l.contains("median  0.80") && l.contains("  missed ") && l.contains("spread 0.0%"),
        "{l}"
    );
    // The spread is over the median, the lower middle value of an even count: 20 and 26 µs
    // give (26 - 20) / 20 = 30% (over the mean, 23 µs, it would be 26.1%), and exactly 25%
    // still meets the limit.
    let l = line(
        &target_check(&[round(20_000, 40_000), round(26_000, 52_000)], false),
        label,
    );
    assert!(
        l.contains("missed (spread)") && l.contains("spread 30.0%"),
        "{l}"
    );
    let l = line(
        &target_check(&[round(20_000, 40_000), round(25_000, 50_000)], false),
        label,
    );
    assert!(l.contains("  met ") && l.contains("spread 25.0%"), "{l}");
    // One round has no spread to judge.
    let l = line(&target_check(&steady[..1], false), label);
    assert!(
        l.contains("  met ") && l.contains("spread: one round"),
        "{l}"
    );
    // The one-CPU target appears only when both sides shared one CPU; the others appear
    // either way.
    let mut busy = round(20_000, 40_000);
    busy.push(rtt("shm", 30_000));
    let across = target_check(std::slice::from_ref(&busy), false);
    assert!(
        !across.contains("one CPU") && across.contains(label),
        "{across}"
    );
    let one = target_check(&[busy], true);
    let l = line(&one, "one CPU, default spin: shm / eventfd");
    assert!(l.contains("median  0.75") && l.contains("  met "), "{l}");
    assert!(one.contains(label), "{one}");
}

#[test]
fn reference_lines_are_printed_not_judged() {
    let rtt = |b: &str, p50: u64| Record::rtt(b, 8, &mut [p50], "split");
    let gap = |b: &str, p50: u64| rtt(b, p50).with_mode(Mode::RttGap1ms);
    // The reference at 0.9x the back-to-back round trip (over the bound of 0.6) and shm's gap
    // at 1.25x the reference (over 1.0): both printed with their ratio, neither judged.
    let round = vec![
        gap("eventfd-spin", 36_000),
        rtt("eventfd", 40_000),
        gap("shm", 45_000),
    ];
    let t = target_check(&[round.clone(), round], false);
    let line = |label: &str| {
        t.lines()
            .find(|l| l.contains(label))
            .unwrap_or_else(|| panic!("no line for {label} in {t}"))
            .to_string()
    };
    let reference = line("gap 1 ms reference (one wake): eventfd-spin / eventfd back-to-back");
    assert!(
        reference.contains("median  0.90")
            && reference.contains("  ref ")
            && !reference.contains("missed")
            && reference.contains("spread 0.0%"),
        "{reference}"
    );
    let over = line("gap 1 ms: shm / eventfd-spin (one-wake reference)");
    assert!(
        over.contains("median  1.25") && over.contains("  ref ") && !over.contains("missed"),
        "{over}"
    );
    // The targets themselves are still judged.
    let target = line("gap 1 ms, default spin: shm / eventfd back-to-back");
    assert!(target.contains("  missed "), "{target}");
}
