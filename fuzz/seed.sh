#!/usr/bin/env bash
# Writes the fuzz targets' seed inputs into fuzz/seeds/ (committed: this script
# is how they were made, and how to make them again after a layout change).
#
#   fuzz/seed.sh            # from anywhere
#
# - seeds/payload/: edge cases beside the repository's Vapi example messages
#   (examples/vapi/*.json, which the runs read as a corpus of their own);
# - seeds/verify/:  requests signed with openssl for each configuration of the
#   `verify` target (layout documented in fuzz_targets/verify.rs and fuzz/README.md),
#   one of them around an example body ($VAPI_EXAMPLES overrides examples/vapi);
# - seeds/phone/:   numbers in the shapes Vapi and people write them.
# Re-running it overwrites its own files.
set -euo pipefail

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$fuzz_dir/.." && pwd)
examples=${VAPI_EXAMPLES:-$repo_root/examples/vapi}
corpus=$fuzz_dir/seeds

command -v openssl >/dev/null || { echo "seed.sh: openssl is needed to sign the verify seeds" >&2; exit 1; }
mkdir -p "$corpus/payload" "$corpus/verify" "$corpus/phone"

# --- payload -------------------------------------------------------------------------
shopt -s nullglob
examples_found=("$examples"/*.json)
if [ "${#examples_found[@]}" -eq 0 ]; then
  echo "seed.sh: no examples found in $examples (set VAPI_EXAMPLES)" >&2
  exit 1
fi
printf '%s' '{"message":{"type":"status-update","status":"forwarding","call":{"id":"c|1%"},"destination":{"number":"+14155550142"},"timestamp":"2024-07-15T07:45:29.814+02:00"}}' >"$corpus/payload/seed-forwarding.json"
printf '%s' '{"message":{"type":"end-of-call-report","call":{"id":"c","type":"outboundPhoneCall","assistantId":"a","customer":{"number":"tel:+1-415-555-0142;ext=7"}},"phoneNumber":{"number":"020 7946 0018"},"startedAt":"2024-07-15T05:45:29Z","endedAt":"2024-07-15T05:46:29.5Z","artifact":{"transcript":"t"},"analysis":{"summary":"s"}}}' >"$corpus/payload/seed-report.json"
printf '%s' '{"message":{"type":"chat.created","chat":{}}}' >"$corpus/payload/seed-no-call.json"
printf '%s' '{"message":{"type":"status-update","status":"ringing","call":{"id":5}}}' >"$corpus/payload/seed-bad-id.json"

# --- verify --------------------------------------------------------------------------
# Must match the fixed clock and keys in fuzz_targets/verify.rs.
secret=vapi-test-secret
ts=1700000000        # 5 s before NOW_MS = 1700000005000
now_s=1700000005
body='{"message":{"type":"status-update","status":"ringing","call":{"id":"c1"}}}'
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# mac <alg> <key-option> <message-file> -> raw tag on stdout
mac() { openssl dgst "-$1" -mac HMAC -macopt "$2" -binary "$3"; }
hexof() { xxd -p -c 256 | tr -d '\n'; }
b64of() { openssl base64 -A; }

# seed <name> <config byte> <flags a> <flags b> <sig> <ts> <x-vapi-secret> <authorization> <body-file>
seed() {
  local out=$corpus/verify/seed-$1
  printf "\\x$2\\x$3\\x$4" >"$out"
  printf '%s\n%s\n%s\n%s\n' "$5" "$6" "$7" "$8" >>"$out"
  cat "$9" >>"$out"
}

printf '%s' "$body" >"$tmp/body"
printf '%s.%s' "$ts" "$body" >"$tmp/ts.body"
printf 'v0:%s:%s' "$now_s" "$body" >"$tmp/v0.body"

hex256=$(mac sha256 "key:$secret" "$tmp/ts.body" | hexof)
wrong=$(mac sha256 "key:not-the-secret" "$tmp/ts.body" | hexof)
seed default-hex       00 03 00 "$hex256" "$ts" "" "" "$tmp/body"
seed default-upper-hex 00 23 00 "$(printf '%s' "$hex256" | tr a-f A-F)" "$ts" "" "" "$tmp/body"
seed default-two-sigs  00 03 00 "$wrong,$hex256" "$ts" "" "" "$tmp/body"
seed default-ms        00 03 00 "$(printf '%s.%s' 1700000004000 "$body" | mac sha256 "key:$secret" /dev/stdin | hexof)" 1700000004000 "" "" "$tmp/body"
seed default-repeated  00 13 00 "$hex256" "$ts" "" "" "$tmp/body"
seed base64            01 03 00 "$(mac sha256 "key:$secret" "$tmp/ts.body" | b64of)" "$ts" "" "" "$tmp/body"
seed prefix            02 03 00 "sha256=$hex256" "$ts" "" "" "$tmp/body"
seed none-timestamp    03 01 00 "$(mac sha256 "key:$secret" "$tmp/body" | hexof)" "" "" "" "$tmp/body"
seed comma-prefix      04 03 00 "v1,$wrong v1,$hex256" "$ts" "" "" "$tmp/body"
seed both              05 07 00 "$hex256" "$ts" "shared-1" "" "$tmp/body"
seed shared-header     06 04 00 "" "" "shared-2" "" "$tmp/body"
seed shared-bearer     06 08 00 "" "" "" "Bearer shared-1" "$tmp/body"
seed shared-both-hdrs  06 0c 00 "" "" "wrong" "bearer shared-1" "$tmp/body"
seed sha512-rotation   07 03 00 "sha512=$(mac sha512 "key:old-secret" "$tmp/ts.body" | b64of)" "$ts" "" "" "$tmp/body"
seed sha1-shared       08 05 00 "sha1=$(mac sha1 "key:$secret" "$tmp/body" | b64of)" "" "shared-1" "" "$tmp/body"
seed v0-format         09 03 00 "$(mac sha256 "key:$secret" "$tmp/v0.body" | hexof)" "$now_s" "" "" "$tmp/body"
seed binary-key        0a 03 00 "$(mac sha256 "hexkey:000102fafbfcfdfeff" "$tmp/ts.body" | hexof)" "$ts" "" "" "$tmp/body"
# Self-signed by the target (byte 1 bit 6), x-timestamp := now (byte 2 bit 4, empty offset).
seed self-signed       00 43 10 "junk" "" "" "" "$tmp/body"
seed self-signed-b64   07 43 1b "" "" "" "" "$tmp/body"
seed self-truncated    00 c3 10 "" "" "" "" "$tmp/body"
# ... and x-timestamp as an offset from now: just inside / outside the 300 s window.
seed self-old-edge     00 43 10 "" "-300" "" "" "$tmp/body"
seed self-too-old      00 43 10 "" "-301" "" "" "$tmp/body"
seed self-future-edge  05 47 10 "" "300" "shared-1" "" "$tmp/body"
seed self-ms-too-new   00 43 20 "" "300001" "" "" "$tmp/body"
seed self-v0-zero-tol  09 43 10 "" "0" "" "" "$tmp/body"
# A real example body, signed.
example=$(ls "$examples"/*.json | head -n 1)
printf '%s.' "$ts" | cat - "$example" >"$tmp/ts.example"
seed example           00 03 00 "$(mac sha256 "key:$secret" "$tmp/ts.example" | hexof)" "$ts" "" "" "$example"

# --- phone ---------------------------------------------------------------------------
i=0
for n in '+14155550142' '+1 (415) 555-0142' '415-555-0142' '1-415-555-0142' \
         '020 7946 0018' '+44 (0)20 7946 0018' '0044 20 7946 0018' '011 44 20 7946 0018' \
         'sip:+14155550142@sip.example.com' 'tel:+1-415-555-0142;ext=7' \
         '+1 415 555 0142 ext. 12' '+39 06 1234 5678' '+971 50 123 4567' \
         '+44 20‑7946–0018' '555-0142' 'sip:alice@example.com' ''; do
  printf '%s' "$n" >"$corpus/phone/seed-$i"
  i=$((i + 1))
done

echo "seeds: payload $(ls "$corpus/payload" | wc -l) (and $examples), verify $(ls "$corpus/verify" | wc -l), phone $(ls "$corpus/phone" | wc -l) files under $corpus"
