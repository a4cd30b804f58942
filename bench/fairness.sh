#!/usr/bin/env bash
# bench/fairness.sh — does one busy connection starve its event loop?
# (issue #9, defect 4). Run it with `make bench-fairness` (which builds
# bin/lemonade first) or `bash bench/fairness.sh`, as root when HAProxy has to
# be installed.
#
# One backend (`fairness backend`, bench/fairness) behind HAProxy (mode tcp,
# nbthread 1) and Lemonade (`lemonade lb`, event_loops: 1, one backend),
# on loopback. For each target, `fairness client` opens BULK connections that
# push data as fast as they can both ways (the backend discards what it reads
# and streams back without end) and one ping connection doing 1-byte round
# trips (PINGS per second) while they run. Every connection goes to the one
# event loop of the balancer, so the round trips show how long the loop makes
# a small request wait behind a bulk transfer. "direct" is the client straight
# to the backend: the floor on this machine.
#
# Targets run in interleaved rounds (DESIGN.md §6). For every run it records
# the round trips' p50/p90/p99/max, the bulk MB/s (both directions summed) and
# the balancer's CPU time (utime+stime from /proc/PID/stat) per GiB moved, and
# prints the medians across rounds and the ratios to HAProxy as Markdown on
# stdout and into bench/results/fairness-DATE.md. The goal of defect 4: a
# p99 round trip within 2× HAProxy's in the same run.
#
# Knobs (environment variables, defaults in brackets):
#   ROUNDS [3]            interleaved rounds
#   DURATION [5]          seconds of measured round trips per run
#   WARMUP_MS [500]       milliseconds of bulk transfer before each measurement
#   BULK [1]              bulk connections
#   DIRECTION [both]      bulk direction: both, up (client to backend), down
#   PINGS [1000]          round trips per second on the ping connection; 0: back to back
#   SETTLE [1]            seconds of rest between two runs
#   TARGETS ["direct lemonade haproxy"]  any subset of direct lemonade
#                         lemonade-before haproxy, run in the order given
#   LEMONADE [bin/lemonade]  the balancer under test (`lemonade lb`)
#   BEFORE []             a second Lemonade binary (an older build, say): adds
#                         the target lemonade-before, run like lemonade with it
#   INSTALL [1]           0: never apt-get, fail if HAProxy is missing
#   KEEP_WORK [0]         1: keep the temp dir (configs, logs, raw.tsv) after a good run
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR=$ROOT/bench/results

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
WARMUP_MS=${WARMUP_MS:-500}
BULK=${BULK:-1}
DIRECTION=${DIRECTION:-both}
PINGS=${PINGS:-1000}
SETTLE=${SETTLE:-1}
TARGETS=${TARGETS:-"direct lemonade haproxy"}
LEMONADE=${LEMONADE:-$ROOT/bin/lemonade}
BEFORE=${BEFORE:-}
INSTALL=${INSTALL:-1}
KEEP_WORK=${KEEP_WORK:-0}

die() { echo "fairness.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

for v in ROUNDS DURATION WARMUP_MS BULK PINGS SETTLE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
((DURATION >= 1)) || die "DURATION must be at least 1"
case $DIRECTION in both | up | down) ;; *) die "DIRECTION must be both, up or down, got '$DIRECTION'" ;; esac
# BEFORE adds lemonade-before right after lemonade (or last) unless TARGETS names it.
if [[ -n $BEFORE && " $TARGETS " != *" lemonade-before "* ]]; then
	if [[ " $TARGETS " == *" lemonade "* ]]; then
		TARGETS=$(sed 's/\(^\| \)lemonade\( \|$\)/\1lemonade lemonade-before\2/' <<<"$TARGETS")
	else
		TARGETS="$TARGETS lemonade-before"
	fi
fi
for t in $TARGETS; do
	case $t in direct | lemonade | lemonade-before | haproxy) ;; *) die "unknown target '$t' in TARGETS (direct lemonade lemonade-before haproxy)" ;; esac
done

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

# ---------------------------------------------------------------- tools

command -v go >/dev/null || die "go not found: it builds bench/fairness"
command -v ss >/dev/null || die "ss (iproute2) not found"
if has haproxy && ! command -v haproxy >/dev/null; then
	((INSTALL)) || die "haproxy missing (INSTALL=0, not installing)"
	[[ $(id -u) == 0 ]] || die "haproxy missing; run as root to install it with apt-get"
	log "installing haproxy"
	apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy >/dev/null ||
		die "apt-get install haproxy failed"
	# The Debian package starts a system service; this script runs its own.
	command -v systemctl >/dev/null && systemctl stop haproxy 2>/dev/null || true
fi
if has lemonade; then
	[[ -x $LEMONADE ]] || die "$LEMONADE not found: run 'make build' (or set LEMONADE=path)"
fi
if has lemonade-before; then
	[[ -n $BEFORE ]] || die "target lemonade-before needs BEFORE=/path/to/lemonade"
	[[ -x $BEFORE ]] || die "BEFORE=$BEFORE is not an executable"
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- processes

WORK=$(mktemp -d /tmp/lemonade-fairness.XXXXXX)
PIDS=()            # every process this script started, in start order
declare -A PID_OF  # name -> pid
declare -A ADDR_OF # name -> host:port

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_started
	if ((rc == 0 && !KEEP_WORK)); then
		rm -rf "$WORK"
	else
		((rc == 0)) || echo "fairness.sh: failed (exit $rc)" >&2
		echo "fairness.sh: configs and logs kept in $WORK" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM






CLK_TCK=$(getconf CLK_TCK)

# Configs: as bench/templates/, but with one backend.
lemonade_config() { # lemonade_config NAME LISTEN BACKEND
	cat <<EOF
runtime:
  drain_timeout_millis: 1000
proxy:
  listen_address: "$2"
  max_connections: 100000
  event_loops: 1      # one thread moving bytes, like HAProxy's nbthread 1
strategy: round_robin
backends:
  - id: 0
    name: $1-1
    address: "$3"
health:
  kind: tcp
  interval: "5s"
  timeout: "2s"
EOF
}

haproxy_config() { # haproxy_config NAME LISTEN BACKEND
	cat <<EOF
# plain TCP proxying, one thread, no health checks, no splicing
global
    nbthread 1
    maxconn 8000
    pidfile $WORK/$1.pid

defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 1

frontend $1-in
    bind $2
    default_backend $1-out

backend $1-out
    server b1 $3
EOF
}

# ---------------------------------------------------------------- results

RAW=$WORK/raw.tsv # round target pings p50 p90 p99 max bulk_MBps cpu_s bytes_total cpu_s_per_gib
: >"$RAW"

# fairness_run ROUND TARGET
fairness_run() {
	local round=$1 target=$2 addr=${ADDR_OF[$2]} before=0 after=0 out line
	[[ $target == direct ]] || before=$(cpu_ticks "$target")
	out=$(timeout $((DURATION + WARMUP_MS / 1000 + 60)) "$TOOL" client -target "$addr" -bulk "$BULK" \
		-duration "${DURATION}s" -warmup "${WARMUP_MS}ms" -pings "$PINGS" -dir "$DIRECTION" 2>&1) ||
		die "fairness client against $target failed: $out"
	if [[ $target != direct ]]; then
		kill -0 "${PID_OF[$target]}" 2>/dev/null || die "$target exited during the run (log: $WORK/$target.log)"
		after=$(cpu_ticks "$target")
	fi
	line=$(grep '^result ' <<<"$out") || die "no result line from the client against $target: $out"
	get() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1==k{print $2}'; }
	local pings p50 p90 p99 mx mbps bytes cpu="-" per_gib="-"
	pings=$(get pings) p50=$(get p50_ms) p90=$(get p90_ms) p99=$(get p99_ms) mx=$(get max_ms)
	mbps=$(get bulk_MBps) bytes=$(get bytes_total)
	if [[ $target != direct ]]; then
		cpu=$(awk -v t=$((after - before)) -v hz="$CLK_TCK" 'BEGIN{printf "%.2f", t / hz}')
		per_gib=$(awk -v c="$cpu" -v b="$bytes" 'BEGIN{ if (b > 0) printf "%.3f", c / (b / 1073741824); else print "nan" }')
	fi
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$pings" "$p50" "$p90" "$p99" "$mx" \
		"$mbps" "$cpu" "$bytes" "$per_gib" >>"$RAW"
	log "round $round $target: $pings round trips, p50 ${p50}ms, p99 ${p99}ms, max ${mx}ms, bulk ${mbps} MB/s, CPU ${cpu}s = ${per_gib}s/GiB"
}


# col TARGET FIELD -> the FIELD column of TARGET's runs
col() { awk -F'\t' -v t="$1" -v f="$2" '$2==t {print $f}' "$RAW"; }

# ratio_median FIELD NUM DEN: median over rounds of NUM/DEN
ratio_median() {
	awk -F'\t' -v f="$1" -v a="$2" -v b="$3" '
		$2==a {x[$1]=$f}
		$2==b {y[$1]=$f}
		END { for (r in x) if ((r in y) && y[r]+0 > 0 && x[r] != "-" && x[r] != "nan") printf "%.3f\n", x[r]/y[r] }' "$RAW" | median
}

# ratios FIELD NUM DEN: every round's NUM/DEN, in round order
ratios() {
	awk -F'\t' -v f="$1" -v a="$2" -v b="$3" '
		$2==a {x[$1]=$f}
		$2==b {y[$1]=$f}
		END { for (r = 1; r in x || r in y; r++) if ((r in x) && (r in y) && y[r]+0 > 0) printf "%s%.2f", (n++ ? ", " : ""), x[r]/y[r] }' "$RAW"
}

fmt() { # fmt VALUE PRINTF-FORMAT
	if [[ $1 == - || $1 == nan ]]; then echo "–"; else awk -v v="$1" -v f="$2" 'BEGIN{printf f, v}'; fi
}

# ---------------------------------------------------------------- run

START_TIME=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK, targets: $TARGETS"

TOOL=$WORK/fairness
(cd "$ROOT/bench/fairness" && GOWORK=off go build -o "$TOOL" .) || die "cannot build bench/fairness"

free_port port
ADDR_OF[backend]=127.0.0.1:$port
ADDR_OF[direct]=${ADDR_OF[backend]}
start backend "$TOOL" backend -addr "${ADDR_OF[backend]}"
wait_ready backend "$TOOL" probe -target "${ADDR_OF[backend]}"

for t in $TARGETS; do
	case $t in
	lemonade | lemonade-before)
		bin=$LEMONADE
		[[ $t == lemonade-before ]] && bin=$BEFORE
		free_port port
		ADDR_OF[$t]=127.0.0.1:$port
		lemonade_config "$t" "${ADDR_OF[$t]}" "${ADDR_OF[backend]}" >"$WORK/$t.yaml"
		"$bin" --log-level warn lb --check -c "$WORK/$t.yaml" >/dev/null 2>&1 ||
			die "$bin rejects $WORK/$t.yaml: $("$bin" lb --check -c "$WORK/$t.yaml" 2>&1 | tail -3)"
		start "$t" "$bin" --log-level warn lb -c "$WORK/$t.yaml"
		;;
	haproxy)
		free_port port
		ADDR_OF[$t]=127.0.0.1:$port
		haproxy_config "$t" "${ADDR_OF[$t]}" "${ADDR_OF[backend]}" >"$WORK/$t.cfg"
		haproxy -c -q -f "$WORK/$t.cfg" || die "haproxy rejects $WORK/$t.cfg"
		start "$t" haproxy -db -f "$WORK/$t.cfg"
		;;
	direct) continue ;;
	esac
	wait_ready "$t" "$TOOL" probe -target "${ADDR_OF[$t]}"
done

for ((r = 1; r <= ROUNDS; r++)); do
	for t in $TARGETS; do
		sleep "$SETTLE"
		fairness_run "$r" "$t"
	done
done

ELAPSED=$(($(date +%s) - START_TIME))

# ---------------------------------------------------------------- report

version_of() { "$1" version 2>/dev/null | head -1; }

report() {
	local t rate="$PINGS per second"
	((PINGS > 0)) || rate="back to back"
	echo "# Fairness: 1-byte round trips during a bulk transfer — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	local bins=""
	[[ $LEMONADE == "$ROOT/bin/lemonade" ]] || bins+="LEMONADE=$LEMONADE "
	[[ -z $BEFORE ]] || bins+="BEFORE=$BEFORE "
	echo "Command: \`${bins}ROUNDS=$ROUNDS DURATION=$DURATION BULK=$BULK DIRECTION=$DIRECTION PINGS=$PINGS TARGETS=\"$TARGETS\" bash bench/fairness.sh\` ($ELAPSED s)"
	echo
	echo "| | |"
	echo "|---|---|"
	echo "| CPUs (nproc) | $(nproc) |"
	echo "| CPU model | $(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo) |"
	echo "| kernel | $(uname -sr) |"
	echo "| Go | $(go version | awk '{print $3}') |"
	has lemonade && echo "| lemonade | $(version_of "$LEMONADE") ($LEMONADE) |"
	has lemonade-before && echo "| lemonade-before | $(version_of "$BEFORE") ($BEFORE) |"
	has haproxy && echo "| HAProxy | $(haproxy -v | head -1 | awk '{print $3}') |"
	echo "| load average at start | $LOADAVG_START |"
	echo
	echo "One \`fairness backend\`; in front of it **lemonade** (\`lemonade lb\`, \`event_loops: 1\`, one backend," \
		"TCP health checks), **lemonade-before** (the same with the BEFORE binary), **haproxy** (\`mode tcp\`," \
		"\`nbthread 1\`, no splicing); **direct** = the client straight to the backend, the floor." \
		"Each run: $BULK bulk connection(s) ($DIRECTION, as fast as they go) and one connection doing 1-byte" \
		"round trips ($rate) for ${DURATION}s after ${WARMUP_MS} ms of bulk transfer. Loopback, interleaved" \
		"rounds; figures are medians over $ROUNDS rounds. bulk MB/s = both directions summed (10^6 bytes);" \
		"CPU s/GiB = the balancer's utime+stime over the run / GiB the client sent and received." \
		"Client, backend and balancer share the machine's $(nproc) CPUs: read the numbers as this run's" \
		"side-by-side comparison, not as absolute figures."
	echo
	echo "| target | round trips | p50 ms | p90 ms | p99 ms | max ms | bulk MB/s | balancer CPU s/GiB |"
	echo "|---|--:|--:|--:|--:|--:|--:|--:|"
	for t in $TARGETS; do
		echo "| $t | $(fmt "$(col "$t" 3 | median)" '%.0f') | $(fmt "$(col "$t" 4 | median)" '%.3f') |" \
			"$(fmt "$(col "$t" 5 | median)" '%.3f') | $(fmt "$(col "$t" 6 | median)" '%.3f') |" \
			"$(fmt "$(col "$t" 7 | median)" '%.3f') | $(fmt "$(col "$t" 8 | median)" '%.0f') |" \
			"$(fmt "$(col "$t" 11 | median)" '%.3f') |"
	done
	if has haproxy && { has lemonade || has lemonade-before; }; then
		echo
		echo "## Against HAProxy (median of the per-round ratios; goal: p99 ÷ HAProxy ≤ 2)"
		echo
		echo "| balancer | p99 ÷ HAProxy | p99 ratio per round | max ÷ HAProxy | bulk MB/s ÷ HAProxy | CPU/GiB ÷ HAProxy |"
		echo "|---|--:|--:|--:|--:|--:|"
		for t in lemonade lemonade-before; do
			has "$t" || continue
			echo "| $t | $(fmt "$(ratio_median 6 "$t" haproxy)" '%.2f') | $(ratios 6 "$t" haproxy) |" \
				"$(fmt "$(ratio_median 7 "$t" haproxy)" '%.2f') | $(fmt "$(ratio_median 8 "$t" haproxy)" '%.2f') |" \
				"$(fmt "$(ratio_median 11 "$t" haproxy)" '%.2f') |"
		done
	fi
	echo
	echo "## Every run"
	echo
	echo "| round | target | round trips | p50 ms | p90 ms | p99 ms | max ms | bulk MB/s | CPU s | bytes moved | CPU s/GiB |"
	echo "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11}' "$RAW"
}

mkdir -p "$RESULTS_DIR"
OUT=$RESULTS_DIR/fairness-$(date +%Y%m%d-%H%M%S).md
report | tee "$OUT"
cp "$RAW" "${OUT%.md}.tsv"
log "written $OUT"
