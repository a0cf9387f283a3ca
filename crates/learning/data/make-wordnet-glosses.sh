#!/bin/sh
# Regenerates wordnet-glosses.txt and WORDNET-LICENSE from Debian's wordnet-base package
# (WordNet 3.0): `apt-get install wordnet-base`, then run this script from this directory.
#
# Each synset line of data.noun, data.verb, data.adj and data.adv ends in `| GLOSS`
# (the definition, then example sentences). The gloss of every synset is written on its own
# line, in file order; the license header lines (starting with two spaces) are skipped. Each
# part of speech contributes at most 256 KiB, cut at a line boundary, so the corpus (about
# 1 MiB) holds nouns, verbs, adjectives and adverbs alike. The output depends only on the
# package's files: sed, head and awk with LC_ALL=C, no sorting, no randomness.
set -eu
export LC_ALL=C
WN=${WORDNET_DIR:-/usr/share/wordnet}
PART_BYTES=262144
out=wordnet-glosses.txt
: > "$out"
for pos in noun verb adj adv; do
    grep -v '^  ' "$WN/data.$pos" \
        | sed -n 's/^[^|]*| *//p' \
        | sed 's/[[:space:]]*$//' \
        | awk -v max="$PART_BYTES" '{ n += length($0) + 1; if (n > max) exit; print }' \
        >> "$out"
done
# The license as Debian ships it (debian/copyright's WordNet3.0 paragraph), de-indented.
awk '/^License: WordNet3.0/ { on = 1; next } on && /^[^ ]/ { exit } on { sub(/^ /, ""); if ($0 == ".") $0 = ""; print }' \
    /usr/share/doc/wordnet-base/copyright > WORDNET-LICENSE
