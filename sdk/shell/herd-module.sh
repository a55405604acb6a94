# herd-module.sh: the shell SDK for native Herd modules (bash 5; bash builtins + coreutils).
#
# Source it from a module script; docs/module-protocol.md is the contract it implements.
#
#   source "$(dirname "$0")/herd-module.sh"
#   herd_init "what this module does" ticks       # description, then main probes
#   greeting=$(herd_config greeting hello)
#   ticks=0
#   tick() { ticks=$((ticks + 1)); herd_probe ticks "$ticks"; }
#   greet() { local name=${HERD_OPTS[name]:-stranger}; echo "$greeting, $name"; }
#   herd_action greet greet
#   herd_loop 1 tick                                # until SIGTERM (exit 0)
#
# Public functions
#   herd_init [DESCRIPTION] [MAIN_PROBE...]   announce the module (axm:option:configuration)
#   herd_config KEY [DEFAULT]                 print KEY of $HERD_MODULE_CONFIG (or DEFAULT)
#   herd_probe NAME VALUE [UNIT] [TYPE]       record a probe (TYPE gauge by default)
#   herd_flush                                send every probe in one axm:monitor message
#   herd_action NAME FUNCTION                 register an action: FUNCTION is called with the
#                                             trigger's opts as KEY=VALUE arguments (also in
#                                             the associative array HERD_OPTS, the action's
#                                             name in HERD_ACTION); its stdout is the reply.
#                                             A non-zero status replies {"error": <stdout or
#                                             "exit status N">}.
#   herd_issue MESSAGE                        report an issue (process:exception)
#   herd_event NAME [KEY=VALUE...]            emit an event (human:event)
#   herd_loop INTERVAL [TICK_FUNCTION]        forever: tick, flush, serve triggers for up to
#                                             INTERVAL seconds (fractions allowed); exit 0 on
#                                             SIGTERM/SIGINT
#   herd_dispatch LINE                        handle one trigger line (herd_loop does it)
#   herd_json_string STRING                   print STRING as a JSON string literal
#
# Without HERD_CHANNEL_FD (run by hand) everything works and nothing is sent. If the agent
# closes its end, the module keeps running and sends become no-ops. Values that look like JSON
# numbers are sent unquoted, everything else as (escaped) JSON strings.

if [[ -n ${_HERD_MODULE_SH_LOADED:-} ]]; then return 0 2>/dev/null || true; fi
_HERD_MODULE_SH_LOADED=1

HERD_MAX_LINE=1048576
_HERD_NUM_RE='^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$'
_HERD_CTRL=$'\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f'
declare -gA _HERD_CONF=() _HERD_PROBE_VAL=() _HERD_PROBE_UNIT=() _HERD_PROBE_TYPE=()
declare -gA _HERD_ACTIONS=() HERD_OPTS=()
declare -ga _HERD_CONF_KEYS=() _HERD_PROBE_ORDER=()
_HERD_CONF_RAW='{}'
_HERD_CONF_PARSED=
_HERD_FD=
_HERD_CLOSED=
_HERD_EOF=
_HERD_PARTIAL=
_HERD_DISCARD=
_HERD_SLEEP_FD=
HERD_ACTION=

_herd_warn() { printf 'herd-module.sh: %s\n' "$*" >&2; }

# The channel: $HERD_CHANNEL_FD when it names an open descriptor.
_herd_channel() {
  _HERD_FD=
  local fd=${HERD_CHANNEL_FD:-}
  [[ -n $fd ]] || return 0
  if [[ ! $fd =~ ^[0-9]+$ ]]; then
    _herd_warn "HERD_CHANNEL_FD=$fd is not a descriptor: running standalone"
    return 0
  fi
  if { : >&"$fd"; } 2>/dev/null; then
    _HERD_FD=$fd
  else
    _herd_warn "HERD_CHANNEL_FD=$fd is not open: running standalone"
  fi
}

# --- JSON -----------------------------------------------------------------------------------

# _herd_q STRING: sets _HQ to STRING as a JSON string literal.
_herd_q() {
  local s=$1
  s=${s//\\/'\\'}
  s=${s//\"/'\"'}
  s=${s//$'\n'/'\n'}
  s=${s//$'\t'/'\t'}
  s=${s//$'\r'/'\r'}
  s=${s//$'\b'/'\b'}
  s=${s//$'\f'/'\f'}
  if [[ $s == *[$_HERD_CTRL]* ]]; then
    local out="" c i
    for ((i = 0; i < ${#s}; i++)); do
      c=${s:i:1}
      if [[ $c == [$_HERD_CTRL] ]]; then printf -v c '\\u%04x' "'$c"; fi
      out+=$c
    done
    s=$out
  fi
  _HQ="\"$s\""
}

herd_json_string() { _herd_q "$1"; printf '%s\n' "$_HQ"; }

# _herd_v VALUE: sets _HQ to VALUE as JSON: a number unquoted, anything else a string.
_herd_v() {
  if [[ $1 =~ $_HERD_NUM_RE ]]; then _HQ=$1; else _herd_q "$1"; fi
}

# _herd_unescape BODY: sets _HU to the JSON string body BODY decoded.
_herd_unescape() {
  local s=$1 out="" c hex
  while [[ $s == *\\* ]]; do
    out+=${s%%\\*}
    s=${s#*\\}
    c=${s:0:1}
    s=${s:1}
    case $c in
      n) out+=$'\n' ;;
      t) out+=$'\t' ;;
      r) out+=$'\r' ;;
      b) out+=$'\b' ;;
      f) out+=$'\f' ;;
      u)
        hex=${s:0:4}
        if [[ $hex =~ ^[0-9a-fA-F]{4}$ ]]; then
          s=${s:4}
          printf -v c "\\u$hex"
          out+=$c
        else
          out+='\u'
        fi
        ;;
      *) out+=$c ;; # \" \\ \/
    esac
  done
  _HU=$out$s
}

# _herd_skip_nested TEXT: TEXT starts with an object or array; sets _HRAW to it and _HREST to
# what follows. Fails when it is not closed.
_herd_skip_nested() {
  local LC_ALL=C
  local s=$1 n=${#1} i c depth=0 instr=0 esc=0
  for ((i = 0; i < n; i++)); do
    c=${s:i:1}
    if ((instr)); then
      if ((esc)); then esc=0
      elif [[ $c == '\' ]]; then esc=1
      elif [[ $c == '"' ]]; then instr=0
      fi
      continue
    fi
    case $c in
      '"') instr=1 ;;
      '{' | '[') depth=$((depth + 1)) ;;
      '}' | ']')
        depth=$((depth - 1))
        if ((depth == 0)); then
          _HRAW=${s:0:i+1}
          _HREST=${s:i+1}
          return 0
        fi
        ;;
    esac
  done
  return 1
}

# _herd_parse_object JSON MAP KEYS: parses a JSON object into the associative array MAP
# (strings decoded; numbers, booleans as written; nested objects/arrays as raw JSON; null
# skipped) and its keys, in order, into the array KEYS. Fails on malformed input.
_herd_parse_object() {
  local _s=$1
  local -n _po_map=$2 _po_keys=$3
  _po_map=()
  _po_keys=()
  local _re_str='^"(([^"\\]|\\.)*)"' _re_lit='^(-?[0-9][0-9.eE+-]*|true|false|null)' _k _v _null
  _s=${_s#"${_s%%[![:space:]]*}"}
  [[ $_s == '{'* ]] || return 1
  _s=${_s:1}
  _s=${_s#"${_s%%[![:space:]]*}"}
  if [[ $_s == '}'* ]]; then
    _s=${_s:1}
    [[ -z ${_s//[[:space:]]/} ]]
    return
  fi
  while :; do
    [[ $_s =~ $_re_str ]] || return 1
    _s=${_s:${#BASH_REMATCH[0]}}
    _herd_unescape "${BASH_REMATCH[1]}"
    _k=$_HU
    _null=
    _s=${_s#"${_s%%[![:space:]]*}"}
    [[ $_s == ':'* ]] || return 1
    _s=${_s:1}
    _s=${_s#"${_s%%[![:space:]]*}"}
    if [[ $_s =~ $_re_str ]]; then
      _s=${_s:${#BASH_REMATCH[0]}}
      _herd_unescape "${BASH_REMATCH[1]}"
      _v=$_HU
    elif [[ $_s =~ $_re_lit ]]; then
      _v=${BASH_REMATCH[1]}
      _s=${_s:${#BASH_REMATCH[0]}}
      [[ $_v == null ]] && _null=1
    elif [[ $_s == [\{\[]* ]]; then
      _herd_skip_nested "$_s" || return 1
      _v=$_HRAW
      _s=$_HREST
    else
      return 1
    fi
    if [[ -n $_k && -z $_null ]]; then
      [[ -v "_po_map[$_k]" ]] || _po_keys+=("$_k")
      _po_map[$_k]=$_v
    fi
    _s=${_s#"${_s%%[![:space:]]*}"}
    case $_s in
      ,*)
        _s=${_s:1}
        _s=${_s#"${_s%%[![:space:]]*}"}
        ;;
      '}'*)
        _s=${_s:1}
        [[ -z ${_s//[[:space:]]/} ]]
        return
        ;;
      *) return 1 ;;
    esac
  done
}

_herd_load_config() {
  _HERD_CONF_PARSED=1
  _HERD_CONF_RAW='{}'
  _HERD_CONF=()
  _HERD_CONF_KEYS=()
  local raw=${HERD_MODULE_CONFIG:-}
  [[ -n ${raw//[[:space:]]/} ]] || return 0
  if _herd_parse_object "$raw" _HERD_CONF _HERD_CONF_KEYS; then
    # Whitespace between tokens is the only place a raw newline can be: keep one line.
    raw=${raw//$'\n'/ }
    _HERD_CONF_RAW=${raw//$'\r'/ }
  else
    _herd_warn "HERD_MODULE_CONFIG is not a flat JSON object: using {}"
    _HERD_CONF=()
    _HERD_CONF_KEYS=()
  fi
}

# --- sending --------------------------------------------------------------------------------

# _herd_send TYPE DATA_JSON: one message, unless standalone or the agent is gone. The write
# happens in a subshell so that a closed channel (SIGPIPE) never kills the module.
_herd_send() {
  [[ -n $_HERD_FD && -z $_HERD_CLOSED ]] || return 0
  local line="{\"type\":\"$1\",\"data\":$2}"
  if ! (printf '%s\n' "$line" >&"$_HERD_FD") 2>/dev/null; then
    _HERD_CLOSED=1
  fi
  return 0
}

# --- public API -----------------------------------------------------------------------------

herd_init() {
  local description=${1:-}
  shift || true
  _herd_channel
  _HERD_CLOSED=
  _herd_load_config
  local name=${HERD_MODULE_NAME:-}
  if [[ -z $name ]]; then
    name=${0##*/}
    name=${name%.sh}
  fi
  local version="" manifest="" re='"version"[[:space:]]*:[[:space:]]*"([^"]*)"'
  if [[ -n ${HERD_MODULE_DIR:-} && -r $HERD_MODULE_DIR/package.json ]]; then
    manifest=$(<"$HERD_MODULE_DIR/package.json")
    [[ $manifest =~ $re ]] && version=${BASH_REMATCH[1]}
    if [[ -z $description ]]; then
      local dre='"description"[[:space:]]*:[[:space:]]*"(([^"\\]|\\.)*)"'
      if [[ $manifest =~ $dre ]]; then
        _herd_unescape "${BASH_REMATCH[1]}"
        description=$_HU
      fi
    fi
  fi
  local probes="" p
  for p in "$@"; do
    _herd_q "$p"
    probes+=${probes:+,}$_HQ
  done
  local qname qver qdesc
  _herd_q "$name"; qname=$_HQ
  _herd_q "$version"; qver=$_HQ
  _herd_q "$description"; qdesc=$_HQ
  _herd_send "axm:option:configuration" "{\"module_name\":$qname,\"module_version\":$qver,\"description\":$qdesc,\"module_conf\":$_HERD_CONF_RAW,\"widget\":{\"type\":\"generic\",\"theme\":[\"#1d3b53\",\"#0f2436\",\"white\",\"white\"],\"el\":{\"probes\":true,\"actions\":true},\"block\":{\"actions\":true,\"issues\":true,\"cpu\":true,\"mem\":true,\"main_probes\":[$probes]}}}"
}

herd_config() {
  [[ -n $_HERD_CONF_PARSED ]] || _herd_load_config
  local key=${1:?herd_config KEY [DEFAULT]}
  if [[ -v "_HERD_CONF[$key]" ]]; then
    printf '%s\n' "${_HERD_CONF[$key]}"
  else
    printf '%s\n' "${2:-}"
  fi
}

herd_probe() {
  local name=${1:?herd_probe NAME VALUE [UNIT] [TYPE]}
  [[ -v "_HERD_PROBE_VAL[$name]" ]] || _HERD_PROBE_ORDER+=("$name")
  _HERD_PROBE_VAL[$name]=${2-}
  _HERD_PROBE_UNIT[$name]=${3:-}
  _HERD_PROBE_TYPE[$name]=${4:-gauge}
}

herd_flush() {
  ((${#_HERD_PROBE_ORDER[@]})) || return 0
  local data="" name qn qv qu qt
  for name in "${_HERD_PROBE_ORDER[@]}"; do
    _herd_q "$name"; qn=$_HQ
    _herd_v "${_HERD_PROBE_VAL[$name]}"; qv=$_HQ
    _herd_q "${_HERD_PROBE_UNIT[$name]}"; qu=$_HQ
    _herd_q "${_HERD_PROBE_TYPE[$name]}"; qt=$_HQ
    data+=${data:+,}"$qn:{\"value\":$qv,\"type\":$qt,\"unit\":$qu}"
  done
  _herd_send "axm:monitor" "{$data}"
}

herd_action() {
  local name=${1:?herd_action NAME FUNCTION} fn=${2:?herd_action NAME FUNCTION}
  _HERD_ACTIONS[$name]=$fn
  _herd_q "$name"
  _herd_send "axm:action" "{\"action_name\":$_HQ,\"action_type\":\"custom\",\"arity\":2}"
}

herd_issue() {
  local msg=${1:-} stack="" i
  for ((i = 1; i < ${#FUNCNAME[@]}; i++)); do
    stack+="    at ${FUNCNAME[i]} (${BASH_SOURCE[i]:-?}:${BASH_LINENO[i - 1]})"$'\n'
  done
  local qm qs
  _herd_q "$msg"; qm=$_HQ
  _herd_q "Error: $msg"$'\n'"$stack"; qs=$_HQ
  _herd_send "process:exception" "{\"message\":$qm,\"stack\":$qs,\"name\":\"Error\"}"
}

herd_event() {
  local name=${1:?herd_event NAME [KEY=VALUE...]} kv qk
  shift
  _herd_q "$name"
  local data="\"__name\":$_HQ"
  for kv in "$@"; do
    [[ $kv == *=* ]] || continue
    _herd_q "${kv%%=*}"; qk=$_HQ
    _herd_v "${kv#*=}"
    data+=",$qk:$_HQ"
  done
  _herd_send "human:event" "{$data}"
}

_herd_reply() { # NAME RETURN_JSON
  _herd_q "$1"
  _herd_send "axm:reply" "{\"action_name\":$_HQ,\"return\":$2}"
}

herd_dispatch() {
  local _hd_line=$1
  local -A _trig=() _opts=()
  local -a _tkeys=() _okeys=() _hd_args=()
  if ! _herd_parse_object "$_hd_line" _trig _tkeys || [[ -z ${_trig[msg]:-} ]]; then
    return 0 # invalid JSON or not a trigger: ignored
  fi
  local _hd_name=${_trig[msg]} _hd_fn _hd_k
  if [[ ${_trig[opts]:-} == '{'* ]]; then
    _herd_parse_object "${_trig[opts]}" _opts _okeys || { _opts=(); _okeys=(); }
  fi
  _hd_fn=${_HERD_ACTIONS[$_hd_name]:-}
  if [[ -z $_hd_fn ]]; then
    _herd_q "unknown action $_hd_name"
    _herd_reply "$_hd_name" "{\"error\":$_HQ}"
    return 0
  fi
  HERD_OPTS=()
  for _hd_k in "${_okeys[@]}"; do
    HERD_OPTS[$_hd_k]=${_opts[$_hd_k]}
    _hd_args+=("$_hd_k=${_opts[$_hd_k]}")
  done
  HERD_ACTION=$_hd_name
  # Run in this shell (so an action can change the module's state), its stdout to a file.
  local _hd_tmp _hd_out _hd_rc=0
  _hd_tmp=$(mktemp "${TMPDIR:-/tmp}/herd-action.XXXXXX") || {
    _herd_reply "$_hd_name" '{"error":"cannot create a temporary file"}'
    return 0
  }
  "$_hd_fn" "${_hd_args[@]}" >"$_hd_tmp" || _hd_rc=$?
  _hd_out=$(<"$_hd_tmp")
  rm -f "$_hd_tmp"
  HERD_ACTION=
  if ((_hd_rc != 0)); then
    [[ -n $_hd_out ]] || _hd_out="exit status $_hd_rc"
    _herd_q "$_hd_out"
    _herd_reply "$_hd_name" "{\"error\":$_HQ}"
  else
    _herd_q "$_hd_out"
    _herd_reply "$_hd_name" "$_HQ"
  fi
  return 0
}

_herd_now_us() {
  local t=${EPOCHREALTIME//[!0-9]/}
  _HNOW=$((10#$t))
}

# _herd_serve US: reads and dispatches triggers for up to US microseconds.
_herd_serve() {
  _herd_now_us
  local _hs_deadline=$((_HNOW + $1)) _hs_left _hs_t _hs_line _hs_rc
  while :; do
    _herd_now_us
    _hs_left=$((_hs_deadline - _HNOW))
    ((_hs_left > 0)) || return 0
    printf -v _hs_t '%d.%06d' $((_hs_left / 1000000)) $((_hs_left % 1000000))
    if [[ -z $_HERD_FD || -n $_HERD_EOF ]]; then
      if [[ -z $_HERD_SLEEP_FD ]]; then
        # A pipe nobody writes to: `read -t` on it is a sleep that signals interrupt.
        exec {_HERD_SLEEP_FD}<> <(:)
      fi
      read -r -t "$_hs_t" -u "$_HERD_SLEEP_FD" _hs_line || true
      return 0
    fi
    _hs_line=
    _hs_rc=0
    IFS= read -r -t "$_hs_t" -n $((HERD_MAX_LINE + 1)) -u "$_HERD_FD" _hs_line || _hs_rc=$?
    if ((_hs_rc > 128)); then # timeout: keep what was read of an unfinished line
      if [[ -z $_HERD_DISCARD ]]; then
        _HERD_PARTIAL+=$_hs_line
        if ((${#_HERD_PARTIAL} > HERD_MAX_LINE)); then
          _HERD_PARTIAL=
          _HERD_DISCARD=1
        fi
      fi
      return 0
    fi
    if ((_hs_rc != 0)); then # end of the channel: the agent closed its end
      _HERD_EOF=1
      _hs_line=$_HERD_PARTIAL$_hs_line
      _HERD_PARTIAL=
      [[ -n $_hs_line && -z $_HERD_DISCARD ]] && herd_dispatch "$_hs_line"
      continue
    fi
    if ((${#_hs_line} > HERD_MAX_LINE)); then # no newline yet and too long: drop up to it
      _HERD_PARTIAL=
      _HERD_DISCARD=1
      continue
    fi
    _hs_line=$_HERD_PARTIAL$_hs_line # a newline ended this piece
    _HERD_PARTIAL=
    if [[ -n $_HERD_DISCARD ]]; then # the end of a dropped line
      _HERD_DISCARD=
      continue
    fi
    ((${#_hs_line} <= HERD_MAX_LINE)) || continue
    [[ -n ${_hs_line//[[:space:]]/} ]] && herd_dispatch "$_hs_line"
  done
}

herd_loop() {
  local _hl_interval=${1:-1} _hl_tick=${2:-} _hl_us
  if [[ $_hl_interval =~ ^([0-9]*)(\.([0-9]{0,6}))?[0-9]*$ && -n $_hl_interval ]]; then
    local _hl_frac=${BASH_REMATCH[3]}000000
    _hl_us=$((10#0${BASH_REMATCH[1]} * 1000000 + 10#${_hl_frac:0:6}))
  else
    _herd_warn "herd_loop: bad interval '$_hl_interval': using 1"
    _hl_us=1000000
  fi
  ((_hl_us > 0)) || _hl_us=1000
  trap 'exit 0' TERM INT
  while :; do
    if [[ -n $_hl_tick ]]; then
      "$_hl_tick" || true
    fi
    herd_flush
    _herd_serve "$_hl_us"
  done
}

_herd_channel
_herd_load_config
