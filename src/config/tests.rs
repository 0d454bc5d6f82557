use super::*;

#[test]
fn scratch() {
    let cases = [
        "programs:\n  - name: a\n    metrics:\n      counters:\n        - name: x\n          tabel: t\n",
        "programs:\n  - name: a\n    bogus: 1\n",
        "bogus: 1\nprograms: []\n",
        "programs:\n  - name: a\n    metrics:\n      counters:\n        - name: x\n          help: h\n          table: t\n          labels:\n            - name: l\n              size: abc\n",
        "programs:\n  - name: a\n    metrics:\n      counters:\n        - name: x\n          table: t\n",
        "programs:\n  - name: a\n     usdt: x\n",
        "programs:\n  - name: a\n  usdt: x\n",
        "programs:\n  - name: a\n    usdt: [\n",
        "programs:\n  - name: a\n    usdt: {a: 1\n",
        "programs:\n",
        "programs: []\n",
        "",
        "programs:\n  - name: a\n    metrics:\n      histograms:\n        - name: x\n          help: h\n          table: t\n          bucket_type: foo\n",
        "programs:\n  - name: a\n    metrics:\n      counters:\n        - {name: x, help: h, table: t, labels: [{name: l, size: 8, decoders: [{name: uint, bogus: 1}]}]}\n",
        "programs:\n  - name: a\n    attachment:\n      binary_nam: x\n",
        "programs:\n  - name: a\n    metrics:\n      counters:\n        - name: x\n          help: h\n          table: t\n          labels:\n            - name: l\n              size: -1\n",
        "programs:\n  - name: a\n    metrics:\n      counters:\n        - name: x\n          help: h\n          table: t\n          labels:\n            - name: l\n              sise: 1\n",
        "programs:\n  - name: a\n    usdt:\n      a: [1]\n",
        "programs:\n  - name: a\n    metrics: {counters: {}}\n",
        "programs:\n  - name: a\n    name: b\n",
        "programs:\n\t- name: a\n",
    ];
    for c in cases {
        match serde_saphyr::from_str::<Config>(c) {
            Ok(_) => println!("OK\n"),
            Err(e) => println!(
                "LOC {:?}\nFULL<<{e}>>\nDBG {e:?}\nCLEAN {}\n=====",
                e.location().map(|l| (l.line(), l.column())),
                clean_yaml_error(&e)
            ),
        }
    }
    panic!();
}
