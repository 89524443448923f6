# Helpers for the Markdown tables of tools/ablation.sh and tools/learner_check.sh (sourced).
# cell_of NAME FILE: the task-accuracy cell of model NAME in a `gemc eval` results.md
cell_of() { awk -F'|' -v m="$1" '$2 ~ "^ *"m" *$" {print $3}' "$2"; }
# num_of CELL: the percentage of a cell, without its interval ("32.5% [26.4, 39.3]" -> 32.5)
num_of() { echo "$1" | awk '{sub("%", "", $1); print $1}'; }
# t_mean "x1 x2 ..." LO HI: "mean [lo, hi]", a 95% t interval clamped to [LO, HI]
t_mean() {
    echo "$1" | awk -v lo_min="$2" -v hi_max="$3" '{n = NF; for (i = 1; i <= n; i++) s += $i;
        m = s / n; for (i = 1; i <= n; i++) v += ($i - m) ^ 2;
        split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262", t, " ");
        if (n > 1 && n <= 10) { h = t[n - 1] * sqrt(v / (n - 1)) / sqrt(n);
            lo = m - h; hi = m + h; if (lo < lo_min) lo = lo_min; if (hi > hi_max) hi = hi_max;
            printf "%+.1f [%+.1f, %+.1f]", m, lo, hi } else printf "%+.1f", m }'
}
# field_of MODEL KEY FILE: a number of model MODEL's line in a `gemc eval` results.json
field_of() {
    awk -v m="\"label\": \"$1\"" -v k="\"$2\": " 'index($0, m) {
        i = index($0, k); if (i) { v = substr($0, i + length(k)); sub(/[,}].*/, "", v); print v } }' "$3"
}
# auroc_of SOURCE FILE: the within-group AUROC of SOURCE in a `gemc rescore --json` output
auroc_of() {
    awk -v m="\"source\": \"$1\"" 'index($0, m) { i = index($0, "\"auroc\": ");
        v = substr($0, i + 9); sub(/[,}].*/, "", v); print v }' "$2"
}
