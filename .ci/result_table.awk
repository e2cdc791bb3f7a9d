# result_table.awk: the table of .ci/device_check.sh and .ci/device_focus.sh. Input: our bench log, then the peers'
# log (a file whose name ends in peers.log is the peers'); every `RESULT <key> <value> [unit]` line. One row per key:
# ours, the peer's value for the same key (for "key@suffix" that the peers do not print, e.g. ours with a kernel
# variant forced, the peer's "key"), and the ratio (> 1: ours better; times peer/ours, throughputs ours/peer).
FNR == 1 { src = (FILENAME ~ /peers\.log$/) ? "peer" : "ours" }
$1 == "RESULT" && NF >= 3 {
    k = $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }
    val[src, k] = $3; unit[k] = (NF >= 4 ? $4 : "")
}
function base(k) { sub(/@.*/, "", k); return k }  # "key@v6": our variant N against the peer line of "key"
END {
    printf "  %-44s %12s %12s %-8s %7s\n", "key", "ours", "peer", "unit", "ratio"
    for (i = 1; i <= n; i++) {
        k = order[i]; o = val["ours", k]; p = ((("peer", k) in val) ? val["peer", k] : val["peer", base(k)]); r = "-"
        if (o != "" && p != "" && o + 0 > 0 && p + 0 > 0)
            r = sprintf("%.2f", (unit[k] ~ /^(ms|s|us)$/) ? p / o : o / p)
        printf "  %-44s %12s %12s %-8s %7s\n", k, (o == "" ? "-" : o), (p == "" ? "-" : p), unit[k], r
    }
}