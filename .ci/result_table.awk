# result_table.awk: the table of .ci/device_check.sh and .ci/device_focus.sh. Input: our bench log, then the peers'
# log (a file whose name ends in peers.log is the peers'); every `RESULT <key> <value> [unit]` line. One row per key:
# ours, the peer's value for the same key (for "key@suffix" that the peers do not print, e.g. ours with a kernel
# variant forced, the peer's "key"), and the ratio (> 1: ours better; times peer/ours, throughputs ours/peer).
# Then, for every key our benches printed with variants forced ("key@..."), the fastest of "key" (the default
# choices) and its variants, and how much faster than the default it is: the line to read before changing a default.
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
    nb = 0
    for (i = 1; i <= n; i++) {
        k = order[i]; b = base(k); o = val["ours", k]
        if (o == "" || o + 0 <= 0) continue
        if (!(b in fam)) { fam[b] = 0; forder[++nb] = b }
        fam[b]++
        better = !(b in best) || ((unit[k] ~ /^(ms|s|us)$/) ? o + 0 < bestv[b] : o + 0 > bestv[b])
        if (better) { best[b] = k; bestv[b] = o + 0 }
    }
    hdr = 0
    for (j = 1; j <= nb; j++) {
        b = forder[j]
        if (fam[b] < 2) continue
        if (!hdr) { printf "  fastest of each key and its variants (x: against the default key):\n"; hdr = 1 }
        d = val["ours", b]; r = "-"
        if (d != "" && d + 0 > 0) r = sprintf("%.2f", (unit[b] ~ /^(ms|s|us)$/) ? d / bestv[b] : bestv[b] / d)
        printf "  %-44s -> %s (%s x)\n", b, best[b], r
    }
}
