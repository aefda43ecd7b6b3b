# Sourced by bench/run.sh and bench/spin_ab.sh (not run on its own): the
# lines they print and the Spin CLI they use. Set bench_prefix first.

say() { printf '%s: %s\n' "$bench_prefix" "$*"; }
die() {
    printf '%s: error: %s\n' "$bench_prefix" "$*" >&2
    exit 1
}

# find_spin: prints the Spin CLI to measure (SPIN_BIN, else ../shared/bin/spin
# beside the repository, else spin on PATH), or nothing when there is none.
# Run from the repository's root.
find_spin() {
    if [[ -n ${SPIN_BIN:-} ]]; then
        printf '%s\n' "$SPIN_BIN"
    elif [[ -x ../shared/bin/spin ]]; then
        printf '%s\n' "$(cd ../shared/bin && pwd)/spin"
    else
        command -v spin || true
    fi
}
