#!/usr/bin/env bash
# bench/compare.sh — Lemonade side by side with HAProxy (mode tcp, 1 thread),
# nginx (stream, 1 worker) and "direct to the backend", on loopback, in
# interleaved rounds (DESIGN.md §6). Run it with `make bench-compare` (which
# builds bin/lemonade first) or `bash bench/compare.sh`, as root.
#
# HTTP: two fasthttp workers (`lemonade worker -f fasthttp -d 0`) behind each
# balancer; wrk in keep-alive and in connection-per-request mode.
# Redis: two redis-server instances behind a second instance of each
# balancer; redis-benchmark plain and pipelined.
#
# For every run it records throughput, latency and the balancer's CPU time
# (utime+stime from /proc/PID/stat, summed over all its processes) divided by
# the requests served, then prints medians across rounds and the ratios
# Lemonade / HAProxy as Markdown on stdout and into
# bench/results/compare-DATE.md.
#
# Feature targets measure what an optional feature of `lemonade lb` costs, on
# against off in the same rounds: each runs exactly like lemonade (same
# binary, template, own port and config) plus the feature's keys, and the
# report adds the ratios feature / lemonade.
#   lemonade-otlp       OTLP/gRPC metric export every OTLP_INTERVAL to a
#                       local sink (bench/otlpsink, built into the temp dir);
#                       fails unless the sink received exports during the run
#   lemonade-accesslog  a text access log in the temp dir; fails unless the
#                       log has lines after the run
#
# Knobs (environment variables, defaults in brackets):
#   ROUNDS [3]            interleaved rounds
#   DURATION [8]          seconds of each keep-alive wrk run
#   CLOSE_DURATION [4]    seconds of each connection-per-request wrk run
#   WARMUP [2]            seconds of untimed keep-alive load per target first
#   THREADS [2] CONNS [64]  wrk -t / -c
#   SETTLE [1]            seconds of rest between two runs
#   TARGETS ["direct lemonade haproxy nginx"]  any of direct lemonade
#                         lemonade-before lemonade-otlp lemonade-accesslog
#                         haproxy nginx, run in the order given
#   MODES ["keepalive close"]
#   REDIS [1]             0 skips the Redis part
#   REDIS_N [100000]      requests per plain redis-benchmark test
#   REDIS_PIPE_N [1000000] requests per pipelined test
#   REDIS_CLIENTS [50] REDIS_PIPELINE [16]
#   OTLP_INTERVAL [1s]    lemonade-otlp's metrics.interval (milliseconds or a
#                         Go duration; lemonade lb checks it)
#   LEMONADE [bin/lemonade]  the binary under test (`lemonade lb`)
#   LEMONADE_WORKER [$LEMONADE]  the binary that runs the workers
#   BEFORE []             a second Lemonade binary (the build before a change):
#                         adds the target lemonade-before, run exactly like
#                         lemonade (own port and config) with that binary, right
#                         after lemonade in TARGETS unless TARGETS names it
#   INSTALL [1]           0: never apt-get, fail if a tool is missing
#   KEEP_WORK [0]         1: keep the temp dir (configs, logs, raw.tsv) after a good run
#   TW_REUSE [1]          1: set net.ipv4.tcp_tw_reuse=1 while running if it is 0
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATES=$ROOT/bench/templates
RESULTS_DIR=$ROOT/bench/results

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
CLOSE_DURATION=${CLOSE_DURATION:-4}
WARMUP=${WARMUP:-2}
THREADS=${THREADS:-2}
CONNS=${CONNS:-64}
SETTLE=${SETTLE:-1}
TARGETS_SET=${TARGETS:-} # as given, for the report's command line
TARGETS=${TARGETS:-"direct lemonade haproxy nginx"}
MODES=${MODES:-"keepalive close"}
REDIS=${REDIS:-1}
REDIS_N=${REDIS_N:-100000}
REDIS_PIPE_N=${REDIS_PIPE_N:-1000000}
REDIS_CLIENTS=${REDIS_CLIENTS:-50}
REDIS_PIPELINE=${REDIS_PIPELINE:-16}
OTLP_INTERVAL=${OTLP_INTERVAL:-1s}
LEMONADE=${LEMONADE:-$ROOT/bin/lemonade}
LEMONADE_WORKER=${LEMONADE_WORKER:-$LEMONADE}
BEFORE=${BEFORE:-}
INSTALL=${INSTALL:-1}
TW_REUSE=${TW_REUSE:-1}
KEEP_WORK=${KEEP_WORK:-0}

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }
# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

for v in ROUNDS DURATION CLOSE_DURATION WARMUP THREADS CONNS SETTLE REDIS_N REDIS_PIPE_N REDIS_CLIENTS REDIS_PIPELINE; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, got '${!v}'"
done
((ROUNDS >= 1)) || die "ROUNDS must be at least 1"
if [[ -n $BEFORE ]] && ! has lemonade-before; then
	if has lemonade; then
		TARGETS=$(sed 's/\(^\| \)lemonade\( \|$\)/\1lemonade lemonade-before\2/' <<<"$TARGETS")
	else
		TARGETS="$TARGETS lemonade-before"
	fi
fi
for t in $TARGETS; do
	case $t in
	direct | lemonade | lemonade-before | lemonade-otlp | lemonade-accesslog | haproxy | nginx) ;;
	*) die "unknown target '$t' in TARGETS (direct lemonade lemonade-before lemonade-otlp lemonade-accesslog haproxy nginx)" ;;
	esac
done
if has lemonade-before; then
	[[ -n $BEFORE ]] || die "target lemonade-before needs BEFORE=/path/to/lemonade"
	[[ -x $BEFORE ]] || die "BEFORE=$BEFORE is not an executable"
fi
for m in $MODES; do
	case $m in keepalive | close) ;; *) die "unknown mode '$m' in MODES (keepalive close)" ;; esac
done

# ---------------------------------------------------------------- tools

STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so

install_tools() {
	local missing=()
	command -v wrk >/dev/null || missing+=(wrk)
	command -v haproxy >/dev/null || missing+=(haproxy)
	command -v nginx >/dev/null || missing+=(nginx-light)
	[[ -f $STREAM_MODULE ]] || missing+=(libnginx-mod-stream)
	command -v redis-server >/dev/null || missing+=(redis-server)
	command -v redis-benchmark >/dev/null && command -v redis-cli >/dev/null || missing+=(redis-tools)
	command -v curl >/dev/null || missing+=(curl)
	((${#missing[@]} == 0)) && return 0
	((INSTALL)) || die "missing: ${missing[*]} (INSTALL=0, not installing)"
	[[ $(id -u) == 0 ]] || die "missing: ${missing[*]}; run as root to install them with apt-get"
	log "installing ${missing[*]}"
	apt-get update -qq || die "apt-get update failed"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install ${missing[*]} failed"
	# The Debian packages start system services; this script runs its own.
	for s in haproxy nginx redis-server; do
		command -v systemctl >/dev/null && systemctl stop "$s" 2>/dev/null || true
	done
}
install_tools

[[ -x $LEMONADE ]] || die "$LEMONADE not found: run 'make build' (or set LEMONADE=path)"
[[ -x $LEMONADE_WORKER ]] || die "$LEMONADE_WORKER not found (LEMONADE_WORKER)"
! has lemonade-otlp || command -v go >/dev/null || die "go not found: target lemonade-otlp builds bench/otlpsink"
"$LEMONADE_WORKER" worker --help >/dev/null 2>&1 || die "$LEMONADE_WORKER has no 'worker' command: rebuild with 'make build'"

# Room for two file descriptors per proxied connection.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

# ---------------------------------------------------------------- processes

WORK=$(mktemp -d /tmp/lemonade-compare.XXXXXX)
PIDS=()           # every process this script started, in start order
declare -A PID_OF # name -> pid
declare -A ADDR_OF # name -> host:port
SYSCTL_RESTORE=""
FEATURE_NOTES=()  # what check_features saw the feature targets do, for the report

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_started
	if [[ -n $SYSCTL_RESTORE ]]; then
		sysctl -qw "net.ipv4.tcp_tw_reuse=$SYSCTL_RESTORE" || true
	fi
	if ((rc == 0 && !KEEP_WORK)); then
		rm -rf "$WORK"
	else
		((rc == 0)) || echo "compare.sh: failed (exit $rc)" >&2
		echo "compare.sh: configs and logs kept in $WORK" >&2
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


render() { # render TEMPLATE OUT NAME LISTEN B1 B2
	sed -e "s|@NAME@|$3|g" -e "s|@LISTEN@|$4|g" -e "s|@BACKEND1@|$5|g" -e "s|@BACKEND2@|$6|g" \
		-e "s|@DIR@|$WORK|g" -e "s|@STREAM_MODULE@|$STREAM_MODULE|g" "$1" >"$2"
}

# lemonade_features TARGET NAME prints the top-level YAML keys that TARGET
# adds to the lemonade template for the balancer NAME: none for lemonade and
# lemonade-before.
lemonade_features() {
	case $1 in
	lemonade-otlp)
		printf 'otlp_endpoint: "%s"\notlp_protocol: grpc\nmetrics:\n  interval: %s\n' \
			"${ADDR_OF[otlp-sink]}" "$OTLP_INTERVAL"
		;;
	lemonade-accesslog)
		printf 'access_log:\n  path: "%s"\n  format: text\n' "$WORK/$2-access.log"
		;;
	esac
}

# start_balancers PREFIX B1 B2: every balancer of TARGETS in front of B1, B2,
# named PREFIX-TARGET (PREFIX-lemonade, PREFIX-haproxy, ...).
start_balancers() {
	local prefix=$1 b1=$2 b2=$3 name addr t
	for t in $TARGETS; do
		name=$prefix-$t
		case $t in
		lemonade | lemonade-before | lemonade-otlp | lemonade-accesslog)
			local bin=$LEMONADE
			[[ $t == lemonade-before ]] && bin=$BEFORE
			free_port PORT
			addr=127.0.0.1:$PORT
			render "$TEMPLATES/lemonade.yaml.tmpl" "$WORK/$name.yaml" "$name" "$addr" "$b1" "$b2"
			lemonade_features "$t" "$name" >>"$WORK/$name.yaml"
			start "$name" "$bin" --log-level warn lb -c "$WORK/$name.yaml"
			;;
		haproxy)
			free_port PORT
			addr=127.0.0.1:$PORT
			render "$TEMPLATES/haproxy.cfg.tmpl" "$WORK/$name.cfg" "$name" "$addr" "$b1" "$b2"
			haproxy -c -q -f "$WORK/$name.cfg" || die "haproxy rejects $WORK/$name.cfg"
			start "$name" haproxy -db -f "$WORK/$name.cfg"
			;;
		nginx)
			free_port PORT
			addr=127.0.0.1:$PORT
			render "$TEMPLATES/nginx.conf.tmpl" "$WORK/$name.conf" "$name" "$addr" "$b1" "$b2"
			nginx -t -q -p "$WORK" -e "$WORK/$name-error.log" -c "$WORK/$name.conf" ||
				die "nginx rejects $WORK/$name.conf"
			start "$name" nginx -p "$WORK" -e "$WORK/$name-error.log" -c "$WORK/$name.conf" -g 'daemon off;'
			;;
		direct) continue ;;
		esac
		ADDR_OF[$name]=$addr
	done
}

# check_features fails unless the feature targets did what they were
# measured doing. Their balancers stop first, so that the access logs are
# flushed and the final OTLP exports are in, then the sink, which prints its
# counts as it exits.
check_features() {
	local prefixes=(http) p t name lines counts kv exports=0 points=0
	((REDIS)) && prefixes+=(redis)
	for p in "${prefixes[@]}"; do
		for t in lemonade-otlp lemonade-accesslog; do
			! has "$t" || stop "$p-$t"
		done
	done
	if has lemonade-accesslog; then
		for p in "${prefixes[@]}"; do
			name=$p-lemonade-accesslog
			lines=$(wc -l <"$WORK/$name-access.log" 2>/dev/null) || lines=0
			((lines > 0)) || die "$name wrote no access log line to $WORK/$name-access.log (see $WORK/$name.log)"
			FEATURE_NOTES+=("$name: $lines access log lines")
		done
	fi
	if has lemonade-otlp; then
		stop otlp-sink
		counts=$(grep '^otlpsink metric_exports=' "$WORK/otlp-sink.log") || true
		for kv in $counts; do
			case $kv in
			metric_exports=*) exports=${kv#*=} ;;
			metric_points=*) points=${kv#*=} ;;
			esac
		done
		# Each lemonade-otlp balancer sends a last export as it stops: only
		# exports beyond those show that the export ran during the runs.
		((exports > ${#prefixes[@]})) ||
			die "the OTLP sink received $exports metric exports from ${#prefixes[@]} lemonade-otlp balancers," \
				"no more than their last ones at shutdown (see $WORK/otlp-sink.log and $WORK/*-lemonade-otlp.log)"
		FEATURE_NOTES+=("OTLP sink: $exports metric exports ($points data points) from ${prefixes[*]/%/-lemonade-otlp}")
	fi
}

CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- results

RAW=$WORK/raw.tsv # kind round target mode rps p50_ms p99_ms cpu_us_per_req errors time_wait_before
: >"$RAW"

to_ms() { # wrk latency (123.45us, 1.23ms, 1.02s) -> milliseconds
	awk -v v="$1" 'BEGIN{
		if (v ~ /us$/) { sub(/us$/, "", v); printf "%.4f", v / 1000 }
		else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.4f", v }
		else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.4f", v * 60000 }
		else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.4f", v * 1000 }
		else print "nan" }'
}

cpu_per_op() { # cpu_per_op TICKS OPS -> microseconds
	awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN{ if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "nan" }'
}

# http_run ROUND TARGET MODE
http_run() {
	local round=$1 target=$2 mode=$3 addr name="" d=$DURATION hdr=()
	if [[ $target == direct ]]; then
		addr=${ADDR_OF[http-worker-1]}
	else
		name=http-$target
		addr=${ADDR_OF[$name]}
	fi
	if [[ $mode == close ]]; then
		d=$CLOSE_DURATION
		hdr=(-H 'Connection: close')
	fi
	local tw
	tw=$(ss -Htan state time-wait | wc -l)
	local before=0 after=0 out
	[[ -n $name ]] && before=$(cpu_ticks "$name")
	out=$(timeout $((d + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${d}s" --latency "${hdr[@]}" "http://$addr/work") ||
		die "wrk against $target ($mode) failed: $out"
	[[ -n $name ]] && after=$(cpu_ticks "$name")
	local reqs rps p50 p99 errs cpu="-"
	reqs=$(awk '/requests in/{print $1}' <<<"$out")
	rps=$(awk '/^Requests\/sec:/{print $2}' <<<"$out")
	p50=$(to_ms "$(awk '$1=="50%"{print $2}' <<<"$out")")
	p99=$(to_ms "$(awk '$1=="99%"{print $2}' <<<"$out")")
	errs=$(awk '/Socket errors:/{gsub(/,/,""); s+=$4+$6+$8+$10} /Non-2xx/{s+=$NF} END{print s+0}' <<<"$out")
	[[ -n $reqs && -n $rps ]] || die "cannot read wrk output for $target ($mode): $out"
	[[ -n $name ]] && cpu=$(cpu_per_op $((after - before)) "$reqs")
	printf 'http\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$target" "$mode" "$rps" "$p50" "$p99" "$cpu" "$errs" "$tw" >>"$RAW"
	log "round $round $mode $target: $rps req/s, p50 ${p50}ms, p99 ${p99}ms, CPU ${cpu}µs/req, errors $errs, TIME_WAIT before $tw"
}

# redis_run ROUND TARGET VARIANT TEST
redis_run() {
	local round=$1 target=$2 variant=$3 test=$4 addr name="" n=$REDIS_N pipe=()
	if [[ $target == direct ]]; then
		addr=${ADDR_OF[redis-1]}
	else
		name=redis-$target
		addr=${ADDR_OF[$name]}
	fi
	if [[ $variant == pipelined ]]; then
		n=$REDIS_PIPE_N
		pipe=(-P "$REDIS_PIPELINE")
	fi
	local before=0 after=0 out
	[[ -n $name ]] && before=$(cpu_ticks "$name")
	out=$(timeout 300 redis-benchmark -h "${addr%:*}" -p "${addr##*:}" -c "$REDIS_CLIENTS" -n "$n" "${pipe[@]}" -t "$test" --csv) ||
		die "redis-benchmark against $target ($variant $test) failed: $out"
	[[ -n $name ]] && after=$(cpu_ticks "$name")
	# "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
	local line rps p50 p99 cpu="-"
	line=$(grep -i "^\"$test\"" <<<"$out" | tail -1 | tr -d '"')
	[[ -n $line ]] || die "cannot read redis-benchmark output for $target ($variant $test): $out"
	IFS=, read -r _ rps _ _ p50 _ p99 _ <<<"$line"
	[[ -n $name ]] && cpu=$(cpu_per_op $((after - before)) "$n")
	printf 'redis\t%s\t%s\t%s-%s\t%s\t%s\t%s\t%s\t0\t-\n' "$round" "$target" "$variant" "$test" "$rps" "$p50" "$p99" "$cpu" >>"$RAW"
	log "round $round redis $variant $test $target: $rps ops/s, p50 ${p50}ms, CPU ${cpu}µs/op"
}


# col KIND TARGET MODE FIELD -> the FIELD column (5..9) of the matching rows
col() { awk -F'\t' -v k="$1" -v t="$2" -v m="$3" -v f="$4" '$1==k && $3==t && $4==m {print $f}' "$RAW"; }

# ratio_median KIND MODE FIELD NUM DEN: median over rounds of NUM/DEN
ratio_median() {
	awk -F'\t' -v k="$1" -v m="$2" -v f="$3" -v a="$4" -v b="$5" '
		$1==k && $4==m && $3==a {x[$2]=$f}
		$1==k && $4==m && $3==b {y[$2]=$f}
		END { for (r in x) if ((r in y) && y[r]+0 > 0 && x[r] != "-") printf "%.3f\n", x[r]/y[r] }' "$RAW" | median
}

fmt() { # fmt VALUE PRINTF-FORMAT
	if [[ $1 == - || $1 == nan ]]; then echo "–"; else awk -v v="$1" -v f="$2" 'BEGIN{printf f, v}'; fi
}

# runs prints KIND MODE LABEL, tab-separated, for every HTTP mode and Redis
# test measured.
runs() {
	local m v test
	for m in $MODES; do printf 'http\t%s\t%s\n' "$m" "$m"; done
	((REDIS)) || return 0
	for v in plain pipelined; do
		for test in set get; do printf 'redis\t%s\t%s\n' "$v-$test" "redis $v ${test^^}"; done
	done
}

# ratio_table BASE LABEL TARGET...: for each TARGET run, the medians of the
# per-round ratios TARGET / BASE of CPU per request and of throughput, in
# every mode; nothing when BASE or all of the TARGETs were not run.
ratio_table() {
	local base=$1 label=$2 t ts=() kind mode name
	shift 2
	for t; do has "$t" && ts+=("$t"); done
	has "$base" && ((${#ts[@]} > 0)) || return 0
	echo
	echo "## Ratios against $label (median of the per-round ratios)"
	echo
	echo "| mode | balancer | CPU/req ÷ $label | req/s ÷ $label |"
	echo "|---|---|--:|--:|"
	while IFS=$'\t' read -r kind mode name; do
		for t in "${ts[@]}"; do
			echo "| $name | $t | $(fmt "$(ratio_median "$kind" "$mode" 8 "$t" "$base")" '%.2f') |" \
				"$(fmt "$(ratio_median "$kind" "$mode" 5 "$t" "$base")" '%.2f') |"
		done
	done < <(runs)
}

# feature_targets describes the feature targets run, for the report.
feature_targets() {
	! has lemonade-otlp ||
		echo -n "**lemonade-otlp** = lemonade plus OTLP/gRPC metric export (\`metrics.interval: $OTLP_INTERVAL\`) to a sink on loopback (bench/otlpsink); "
	! has lemonade-accesslog ||
		echo -n "**lemonade-accesslog** = lemonade plus \`access_log\` (\`format: text\`) to a file; "
}

# ---------------------------------------------------------------- machine

machine() {
	local cpu
	cpu=$(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)
	echo "| | |"
	echo "|---|---|"
	echo "| CPUs (nproc) | $(nproc) |"
	echo "| CPU model | ${cpu:-unknown} |"
	echo "| memory | $(awk '/^MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo) |"
	echo "| kernel | $(uname -sr) |"
	echo "| OS | $(. /etc/os-release 2>/dev/null && echo "${PRETTY_NAME:-?}") |"
	echo "| Go | $(go version 2>/dev/null | awk '{print $3}' || echo '?') |"
	echo "| lemonade (balancer) | $("$LEMONADE" version 2>/dev/null | head -1) |"
	[[ -z $BEFORE ]] || echo "| lemonade-before (balancer) | $("$BEFORE" version 2>/dev/null | head -1) ($BEFORE) |"
	[[ $LEMONADE_WORKER == "$LEMONADE" ]] || echo "| lemonade (workers) | $("$LEMONADE_WORKER" version 2>/dev/null | head -1) |"
	echo "| HAProxy | $(haproxy -v | head -1 | awk '{print $3}') |"
	echo "| nginx | $(nginx -v 2>&1 | sed 's|.*nginx/||') |"
	echo "| wrk | $(wrk -v 2>&1 | head -1 | awk '{print $2}') |"
	echo "| redis | $(redis-server --version | sed 's/.* v=\([^ ]*\).*/\1/') |"
	echo "| load average at start | $LOADAVG_START |"
	echo "| net.ipv4.tcp_tw_reuse | $(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null || echo '?') (during the run) |"
}

# ---------------------------------------------------------------- run

if ((TW_REUSE)) && [[ $(sysctl -n net.ipv4.tcp_tw_reuse 2>/dev/null || echo x) == 0 ]]; then
	if sysctl -qw net.ipv4.tcp_tw_reuse=1 2>/dev/null; then
		SYSCTL_RESTORE=0
		log "net.ipv4.tcp_tw_reuse=1 for the run (restored to 0 at exit)"
	else
		log "warning: cannot set net.ipv4.tcp_tw_reuse=1; connection-per-request runs may run out of ports"
	fi
fi

START_TIME=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "work dir $WORK"

# HTTP backends and balancers.
for i in 1 2; do
	free_port PORT
	ADDR_OF[http-worker-$i]=127.0.0.1:$PORT
	start "http-worker-$i" "$LEMONADE_WORKER" --log-level warn worker -f fasthttp -a "${ADDR_OF[http-worker-$i]}" -n "worker-$i" -d 0
done
for i in 1 2; do
	wait_ready "http-worker-$i" curl -fsS -m 1 "http://${ADDR_OF[http-worker-$i]}/health"
done

# The OTLP collector the lemonade-otlp balancers export to.
if has lemonade-otlp; then
	(cd "$ROOT/bench/otlpsink" && GOWORK=off go build -o "$WORK/otlpsink" .) || die "cannot build bench/otlpsink"
	free_port PORT
	ADDR_OF[otlp-sink]=127.0.0.1:$PORT
	start otlp-sink "$WORK/otlpsink" -addr "${ADDR_OF[otlp-sink]}"
	wait_ready otlp-sink grep -q '^otlpsink: listening' "$WORK/otlp-sink.log"
fi

start_balancers http "${ADDR_OF[http-worker-1]}" "${ADDR_OF[http-worker-2]}"

# Each balancer must answer and spread new connections over both workers.
for t in $TARGETS; do
	[[ $t == direct ]] && continue
	wait_ready "http-$t" curl -fsS -m 1 "http://${ADDR_OF[http-$t]}/work"
	seen=$(for _ in 1 2 3 4; do curl -fsS -m 2 "http://${ADDR_OF[http-$t]}/work"; echo; done | grep -o 'worker-[12]' | sort -u | wc -l)
	((seen == 2)) || die "http-$t does not spread connections over both workers"
done

if ((REDIS)); then
	for i in 1 2; do
		free_port PORT
		ADDR_OF[redis-$i]=127.0.0.1:$PORT
		start "redis-$i" redis-server --bind 127.0.0.1 --port "${ADDR_OF[redis-$i]##*:}" --save '' --appendonly no \
			--daemonize no --protected-mode no --dir "$WORK" --logfile ''
	done
	for i in 1 2; do
		wait_ready "redis-$i" redis-cli -p "${ADDR_OF[redis-$i]##*:}" ping
	done
	start_balancers redis "${ADDR_OF[redis-1]}" "${ADDR_OF[redis-2]}"
	for t in $TARGETS; do
		[[ $t == direct ]] && continue
		wait_ready "redis-$t" bash -c "[[ \$(redis-cli -p ${ADDR_OF[redis-$t]##*:} ping) == PONG ]]"
	done
fi

log "warming up (${WARMUP}s per target)"
if ((WARMUP > 0)); then
	for t in $TARGETS; do
		a=${ADDR_OF[http-$t]:-${ADDR_OF[http-worker-1]}}
		timeout $((WARMUP + 30)) wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" "http://$a/work" >/dev/null
	done
fi

for ((r = 1; r <= ROUNDS; r++)); do
	for m in $MODES; do
		for t in $TARGETS; do
			sleep "$SETTLE"
			http_run "$r" "$t" "$m"
		done
	done
done

if ((REDIS)); then
	for ((r = 1; r <= ROUNDS; r++)); do
		for v in plain pipelined; do
			for test in set get; do
				for t in $TARGETS; do
					sleep "$SETTLE"
					redis_run "$r" "$t" "$v" "$test"
				done
			done
		done
	done
fi

check_features
ELAPSED=$(($(date +%s) - START_TIME))

# ---------------------------------------------------------------- report

report() {
	local m t label
	echo "# Lemonade vs HAProxy vs nginx — $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	local vars=""
	[[ $LEMONADE == "$ROOT/bin/lemonade" ]] || vars+="LEMONADE=$LEMONADE "
	[[ $LEMONADE_WORKER == "$LEMONADE" ]] || vars+="LEMONADE_WORKER=$LEMONADE_WORKER "
	[[ -z $BEFORE ]] || vars+="BEFORE=$BEFORE "
	[[ -z $TARGETS_SET ]] || vars+="TARGETS=\"$TARGETS_SET\" "
	((REDIS)) || vars+="REDIS=0 "
	echo "Command: \`${vars}ROUNDS=$ROUNDS DURATION=$DURATION CLOSE_DURATION=$CLOSE_DURATION THREADS=$THREADS CONNS=$CONNS REDIS_N=$REDIS_N REDIS_PIPE_N=$REDIS_PIPE_N bash bench/compare.sh\` ($ELAPSED s)"
	echo
	machine
	echo
	echo "Targets: **direct** = wrk straight to one worker (the limit); **lemonade** = \`lemonade lb\`," \
		"round_robin over both workers, \`event_loops: 1\`;" \
		"${BEFORE:+**lemonade-before** = the same with the BEFORE binary; }$(feature_targets)**haproxy** = \`mode tcp\`, \`nbthread 1\`," \
		"\`balance roundrobin\`; **nginx** = \`stream\`, \`worker_processes 1\`. Backends: two" \
		"\`lemonade worker -f fasthttp -d 0\` (\`GET /work\`). Everything on loopback on this machine," \
		"interleaved: each round runs every target once per mode. Figures are medians over $ROUNDS rounds;" \
		"CPU = the balancer's utime+stime over the run (all its processes) / requests."
	if ((${#FEATURE_NOTES[@]} > 0)); then
		echo
		echo "Feature targets, checked after the runs:"
		echo
		printf -- '- %s\n' "${FEATURE_NOTES[@]}"
	fi
	for m in $MODES; do
		echo
		if [[ $m == keepalive ]]; then
			echo "## HTTP, keep-alive — \`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency\`"
		else
			echo "## HTTP, connection per request — \`wrk -t$THREADS -c$CONNS -d${CLOSE_DURATION}s --latency -H 'Connection: close'\`"
		fi
		echo
		echo "| target | req/s | p50 ms | p99 ms | balancer CPU µs/req | errors (all rounds) |"
		echo "|---|--:|--:|--:|--:|--:|"
		for t in $TARGETS; do
			echo "| $t | $(fmt "$(col http "$t" "$m" 5 | median)" '%.0f') | $(fmt "$(col http "$t" "$m" 6 | median)" '%.3f') |" \
				"$(fmt "$(col http "$t" "$m" 7 | median)" '%.3f') | $(fmt "$(col http "$t" "$m" 8 | median)" '%.1f') |" \
				"$(col http "$t" "$m" 9 | awk '{s+=$1} END{print s+0}') |"
		done
	done
	ratio_table haproxy HAProxy lemonade lemonade-before lemonade-otlp lemonade-accesslog nginx
	ratio_table lemonade lemonade lemonade-otlp lemonade-accesslog
	if ((REDIS)); then
		for v in plain pipelined; do
			echo
			if [[ $v == plain ]]; then
				label="redis-benchmark -c $REDIS_CLIENTS -n $REDIS_N -t set|get --csv"
			else
				label="redis-benchmark -c $REDIS_CLIENTS -n $REDIS_PIPE_N -P $REDIS_PIPELINE -t set|get --csv"
			fi
			echo "## Redis, $v — \`$label\`"
			echo
			echo "| target | SET ops/s | GET ops/s | SET p50 ms | GET p50 ms | SET p99 ms | GET p99 ms | CPU µs/op SET | CPU µs/op GET |"
			echo "|---|--:|--:|--:|--:|--:|--:|--:|--:|"
			for t in $TARGETS; do
				echo "| $t | $(fmt "$(col redis "$t" "$v-set" 5 | median)" '%.0f') | $(fmt "$(col redis "$t" "$v-get" 5 | median)" '%.0f') |" \
					"$(fmt "$(col redis "$t" "$v-set" 6 | median)" '%.3f') | $(fmt "$(col redis "$t" "$v-get" 6 | median)" '%.3f') |" \
					"$(fmt "$(col redis "$t" "$v-set" 7 | median)" '%.3f') | $(fmt "$(col redis "$t" "$v-get" 7 | median)" '%.3f') |" \
					"$(fmt "$(col redis "$t" "$v-set" 8 | median)" '%.2f') | $(fmt "$(col redis "$t" "$v-get" 8 | median)" '%.2f') |"
			done
		done
	fi
	echo
	echo "## Every run"
	echo
	echo "| kind | round | target | mode | req or ops/s | p50 ms | p99 ms | CPU µs/op | errors | TIME_WAIT sockets before |"
	echo "|---|--:|---|---|--:|--:|--:|--:|--:|--:|"
	awk -F'\t' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10}' "$RAW"
}

mkdir -p "$RESULTS_DIR"
OUT=$RESULTS_DIR/compare-$(date +%Y%m%d-%H%M%S).md
report | tee "$OUT"
cp "$RAW" "${OUT%.md}.tsv"
log "written $OUT"
