"""The exporter config of the key-map benchmarks (bench/bpf/scrape_keys.bpf.c,
USDT `bench:key(i)` counting key i): one counter, `bench_keys_total`, one
series per key, with the key's labels as LABELS names them."""

# The key's labels: `uint` alone is injective (every key its own series, encoded as
# read); a `static_map` on the key's high half (always 0 here) makes the exporter
# merge keys by decoded label set, the path string, static_map and regexp labels take.
LABELS = {
    "uint": "[{name: key, size: 8, decoders: [{name: uint}]}]",
    "merged": "[{name: key, size: 4, decoders: [{name: uint}]}, "
              "{name: half, size: 4, decoders: [{name: uint}, {name: static_map, static_map: {'0': low}}]}]",
}


def keys_config(obj, labels, comm):
    """Program `bench` from the object `obj`, labels `labels` (a LABELS key),
    on processes named `comm`."""
    return f"""programs:
  - name: bench
    object: {obj}
    metrics:
      counters:
        - name: bench_keys_total
          help: keys
          table: scrape_keys
          labels: {LABELS[labels]}
    usdt:
      bench:key: on_key
    attachment: {{binary_name: {comm}}}
"""
