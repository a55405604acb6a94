#!/usr/bin/env bash
# Tests for sdk/shell/herd-module.sh: unit checks of the JSON helpers here, then modules driven
# through a real channel by drive.py. Exits non-zero and names what failed.
# Usage: bash sdk/shell/tests/run.sh   (from any directory)
set -u
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
sdk=$here/../herd-module.sh
failures=0
pass=0

fail() { echo "FAIL $*"; failures=$((failures + 1)); }
ok() { pass=$((pass + 1)); }
expect() { # WHAT GOT WANT
  if [[ $2 == "$3" ]]; then ok; else fail "$1: got [$2], want [$3]"; fi
}

command -v python3 >/dev/null || { echo "FAIL python3 is needed by the tests"; exit 1; }
[[ ${BASH_VERSINFO[0]} -ge 5 ]] || { echo "FAIL bash 5 is needed"; exit 1; }

# --- JSON string escaping: every output is valid JSON that decodes to the input -------------
# shellcheck source=../herd-module.sh
unset HERD_CHANNEL_FD HERD_MODULE_CONFIG
source "$sdk"
inputs=(
  ''
  'plain'
  'quote " and \ backslash'
  $'new\nline\ttab\rcr'
  $'bell\a esc\e ctl\x01\x1f'
  'unicode é 漢字 🙂'
  '\n literal backslash-n'
  '&& patsub & replacement'
)
for s in "${inputs[@]}"; do
  json=$(herd_json_string "$s")
  back=$(printf '%s' "$json" | python3 -c 'import json,sys; sys.stdout.write(json.loads(sys.stdin.read()) + "|")' 2>&1)
  expect "herd_json_string round trip of $(printf %q "$s")" "$back" "$s|"
done

# --- numbers go unquoted, anything else is a string ------------------------------------------
for v in 0 42 -7 3.25 -0.5 1e9 2.5E-3; do
  _herd_v "$v"; expect "number $v" "$_HQ" "$v"
done
for v in 012 +1 1. .5 1e 0x10 abc '' '1 2' true; do
  _herd_v "$v"; expect "string $v" "$_HQ" "\"$v\""
done

# --- the flat object parser ---------------------------------------------------------------------
declare -A map=()
declare -a keys=()
if _herd_parse_object '{"b":"2","a":1,"b":"3"}' map keys; then
  expect "key order" "${keys[*]}" "b a"
  expect "a later duplicate wins" "${map[b]}" "3"
else
  fail "parse of a valid object"
fi
for bad in '' '[]' '{' '{"a"}' '{"a":}' '{"a":1,}' '{"a":1} x' '{a:1}' '{"a":"unterminated}' \
  '{"a":{"b":1}'; do
  if _herd_parse_object "$bad" map keys; then fail "malformed accepted: $bad"; else ok; fi
done
for good in '{}' ' { } ' '{"a":[1,{"b":"]"}]}' '{"e":"\u00e9","s":"a\/b"}'; do
  if _herd_parse_object "$good" map keys; then ok; else fail "valid rejected: $good"; fi
done

# --- herd_config under set -u, without any config -------------------------------------------
got=$(bash -uc 'unset HERD_MODULE_CONFIG HERD_CHANNEL_FD; source "$1"; herd_config x dflt; herd_config y' _ "$sdk" 2>&1)
expect "herd_config without config" "$got" "dflt"

# --- a module driven through a real channel ---------------------------------------------------
echo "unit checks: $pass passed, $failures failed"
if ! python3 "$here/drive.py"; then
  failures=$((failures + 1))
fi

if ((failures)); then
  echo "sdk/shell tests: FAILED ($failures)"
  exit 1
fi
echo "sdk/shell tests: all passed"
