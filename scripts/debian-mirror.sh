#!/bin/bash
# Print the Debian mirror this machine's apt already uses, for debootstrap of SUITE (default bookworm):
#   - deb822 stanzas (/etc/apt/sources.list.d/*.sources): Types with deb, not Enabled: no, the first of its URIs;
#   - classic lines (/etc/apt/sources.list, /etc/apt/sources.list.d/*.list): `deb [options] URI suite ...`.
# A source that lists SUITE wins; else the first non-security one (a mirror serves every suite). Where it came
# from goes to stderr. With no apt source at all it says so and exits 1: set HARNESS_DEBIAN_MIRROR instead.
# Environment: HARNESS_DEBIAN_MIRROR (used as it is, no apt source read); APT_SOURCES_LIST and APT_SOURCES_PARTS
# (default /etc/apt/sources.list and /etc/apt/sources.list.d; the tests point them elsewhere).
set -euo pipefail

SUITE="${1:-bookworm}"
LIST="${APT_SOURCES_LIST:-/etc/apt/sources.list}"
PARTS="${APT_SOURCES_PARTS:-/etc/apt/sources.list.d}"

if [ -n "${HARNESS_DEBIAN_MIRROR:-}" ]; then
    echo "debian-mirror: $HARNESS_DEBIAN_MIRROR (from HARNESS_DEBIAN_MIRROR)" >&2
    echo "$HARNESS_DEBIAN_MIRROR"
    exit 0
fi

shopt -s nullglob
deb822=("$PARTS"/*.sources)
classic=()
[ -f "$LIST" ] && classic+=("$LIST")
classic+=("$PARTS"/*.list)

# One line per usable source: "URI SUITES FILE", deb822 first (apt's own default format since Debian 12).
sources() {
    if [ "${#deb822[@]}" -gt 0 ]; then
        awk '
            function flush() {
                if (uri != "" && types ~ /(^| )deb( |$)/ && tolower(enabled) != "no") print uri, suites, file
                uri = ""; types = ""; suites = ""; enabled = ""; key = ""
            }
            FNR == 1 { flush() }
            /^[ \t]*#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { if (key == "URIs" && uri == "") uri = $1; else if (key == "Suites") suites = suites " " $0; next }
            {
                file = FILENAME
                key = $1; sub(/:$/, "", key); value = $0; sub(/^[^:]*:[ \t]*/, "", value)
                if (key == "Types") types = value
                else if (key == "URIs") { split(value, parts, /[ \t]+/); uri = parts[1] }
                else if (key == "Suites") suites = value
                else if (key == "Enabled") enabled = value
            }
            END { flush() }
        ' "${deb822[@]}"
    fi
    if [ "${#classic[@]}" -gt 0 ]; then
        awk '
            $1 != "deb" { next }
            {
                field = 2
                if ($2 ~ /^\[/) { while (field <= NF && $field !~ /\]$/) field++; field++ }
                if (field + 1 <= NF) print $field, $(field + 1), FILENAME
            }
        ' "${classic[@]}"
    fi
}

found="$(sources || true)"
if [ -z "$found" ]; then
    echo "debian-mirror: no apt source found in $LIST or $PARTS/*.sources or $PARTS/*.list, so no Debian mirror" \
        "to build the base image from; set HARNESS_DEBIAN_MIRROR=http://<your mirror>/debian" >&2
    exit 1
fi
chosen="$(awk -v suite="$SUITE" '{ for (i = 2; i < NF; i++) if ($i == suite) { print; exit } }' <<<"$found")"
why="lists $SUITE"
if [ -z "$chosen" ]; then
    chosen="$(awk '$1 !~ /security/ { for (i = 2; i < NF; i++) if ($i ~ /-security$/) next; print; exit }' <<<"$found")"
    why="lists no $SUITE; its mirror serves every suite"
fi
if [ -z "$chosen" ]; then
    echo "debian-mirror: the apt sources list only security archives, which hold no whole suite to build" \
        "$SUITE from; set HARNESS_DEBIAN_MIRROR=http://<your mirror>/debian" >&2
    exit 1
fi
read -r uri _ <<<"$chosen"
echo "debian-mirror: $uri (from ${chosen##* }, which $why)" >&2
echo "$uri"
