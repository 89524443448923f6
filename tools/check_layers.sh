#!/bin/sh
# The layers of src/, from the top: every #include "FOLDER/..." of a file under src/ must name its
# own folder or one below it (README, "Layout"). Prints each include that runs back up, and the
# count of includes between each pair of folders with -v. Exit 1 on any upward include.
#   sh tools/check_layers.sh [-v]
set -eu
cd "$(dirname "$0")/.."
order="main cmd pipeline stages gem run model text config base"
# run and model are one level: neither may include the other
grep -rn --include='*.c' --include='*.h' --include='*.inc' --include='*.cu' --include='*.cuh' \
    '^[[:space:]]*#[[:space:]]*include[[:space:]]*"' src |
    awk -v order="$order" -v verbose="${1:-}" '
    BEGIN { n = split(order, o, " "); for (i = 1; i <= n; i++) rank[o[i]] = i; rank["model"] = rank["run"] }
    {
        split($0, parts, ":"); file = parts[1]
        match($0, /"[^"]+"/); inc = substr($0, RSTART + 1, RLENGTH - 2)
        nf = split(file, fp, "/"); from = nf > 2 ? fp[2] : "main"
        if (index(inc, "/") == 0) next # a file of the same folder, by its own name
        split(inc, ip, "/"); to = ip[1]
        if (!(to in rank) || to == from) next
        count[from " -> " to]++
        if (rank[to] <= rank[from]) { bad++; print "upward include: " file " includes \"" inc "\" (" from " -> " to ")" }
    }
    END {
        if (verbose == "-v") for (e in count) printf "  %-22s %d\n", e, count[e]
        if (bad) { print bad " include(s) run back up the layers (" order "; README, Layout)"; exit 1 }
        print "layers: every include runs down (" order ")"
    }'
