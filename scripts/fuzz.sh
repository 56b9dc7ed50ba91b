#!/usr/bin/env bash
# Runs each cargo-fuzz target of fuzz/ for a bounded time (issue 8, item 9).
#
#   scripts/fuzz.sh                 # every target, FUZZ_SECS (default 120) each
#   FUZZ_SECS=600 scripts/fuzz.sh image
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain for libFuzzer's
# instrumentation flags (-Zsanitizer, sancov). Without a nightly, the stable toolchain is
# told to accept them with RUSTC_BOOTSTRAP=1 (its sanitizer runtimes ship with rust-std).
# The seed corpora are built from tests/fixtures (photos, posts, the seed article) and
# fuzz/seeds into fuzz/corpus/<target>/ (not committed; what libFuzzer adds stays there
# between runs). A crash, timeout (FUZZ_TIMEOUT s for one input, default 10) or OOM
# (FUZZ_RSS_MB, default 2048) leaves its input in fuzz/artifacts/<target>/ and makes the
# script exit non-zero; the fix gets a regression test with that input under
# tests/fixtures/fuzz/ (see tests/it/fuzz_regressions.rs).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
secs=${FUZZ_SECS:-120}
timeout_secs=${FUZZ_TIMEOUT:-10}
rss_mb=${FUZZ_RSS_MB:-2048}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(url_grammar article image)

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    fuzz=(cargo +nightly fuzz)
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
fi
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz missing: cargo install cargo-fuzz" >&2; exit 2; }

# seed TARGET PREFIX-BYTE FILE...: copies each file into the target's corpus, after one
# selector byte for the targets that read one.
seed() {
    local target=$1 prefix=$2
    shift 2
    local dir=fuzz/corpus/$target
    mkdir -p "$dir"
    for file in "$@"; do
        [ -f "$file" ] || continue
        local name
        name=$(basename "$file")
        if [ -z "$prefix" ]; then
            cp "$file" "$dir/seed-$name"
        else
            { printf "\\x$prefix"; cat "$file"; } >"$dir/seed-$prefix-$name"
        fi
    done
}

seed url_grammar "" fuzz/seeds/url_grammar/*
# Every imgmirror URL the seed article's rewrite would write is a URL seed too.
grep -o 'https://cors.zfour.workers.dev/?[^"'"'"' ]*' tests/fixtures/seed-article.md | head -5 |
    sed 's|https://cors.zfour.workers.dev||' | nl -w1 -s' ' |
    while read -r n url; do printf '%s' "$url" >"fuzz/corpus/url_grammar/seed-article-$n"; done

md=(tests/fixtures/seed-article.md tests/fixtures/posts/*.md tests/fixtures/articles/*.md)
html=(tests/fixtures/posts/*.html tests/fixtures/articles/*.html)
seed article 00 "${md[@]}"
seed article 0a "${md[@]}"
seed article 01 "${html[@]}"
seed article 07 "${html[@]}"

small_images=(fuzz/seeds/image/* tests/fixtures/bomb-50000.jpg tests/fixtures/bomb-50000.png
    tests/fixtures/photo-480.jpg tests/fixtures/exif-orientation-6-gps.jpg
    tests/fixtures/astronaut-512.jpg tests/fixtures/tiny-anim.gif tests/fixtures/truncated-1080.jpg)
# 00 = w=64 as JPEG, 1b = GIF output, 12 = WebP, 4c = negotiated + the placeholder path.
for prefix in 00 1b 12 4c; do seed image $prefix "${small_images[@]}"; done
[ -d tests/fixtures/fuzz ] && for t in url_grammar article image; do
    [ -d "tests/fixtures/fuzz/$t" ] && cp tests/fixtures/fuzz/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
done

declare -A max_len=([url_grammar]=16384 [article]=65536 [image]=131072)
failed=()
for target in "${targets[@]}"; do
    echo "== $target: ${secs}s" >&2
    mkdir -p "fuzz/artifacts/$target"
    if ! "${fuzz[@]}" run "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$secs" -timeout="$timeout_secs" -rss_limit_mb="$rss_mb" \
        -max_len="${max_len[$target]:-65536}" -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" 2>&1 | tee "fuzz/artifacts/$target.log" |
        grep -E '^(#[0-9]+ +(INITED|DONE)|==[0-9]+==|SUMMARY|stat::(number_of_executed_units|peak_rss_mb))|panicked|Test unit written|Done [0-9]+ runs'; then
        :
    fi
    if grep -qE 'SUMMARY|Test unit written|panicked' "fuzz/artifacts/$target.log"; then
        failed+=("$target")
    fi
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (inputs in fuzz/artifacts/<target>/, logs in fuzz/artifacts/<target>.log)" >&2
    exit 1
fi
echo "fuzz: ${targets[*]} ran ${secs}s each, clean" >&2
