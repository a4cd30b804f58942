# shellcheck shell=bash
# bench/lib.sh — what bench/compare.sh and bench/fairness.sh share: ports,
# processes and their CPU time, medians. Sourced once the script defines
# die and log; its functions use WORK, PIDS, PID_OF and TARGETS too.

# has TARGET: TARGET is one of $TARGETS.
has() { [[ " $TARGETS " == *" $1 "* ]]; }

declare -A USED_PORT
# free_port VAR sets VAR to a loopback port below the ephemeral range that
# nothing uses (not even a TIME_WAIT socket). No subshell, so two calls never
# hand out the same port.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		[[ -n ${USED_PORT[$p]:-} ]] && continue
		if [[ -z $(ss -Htan "( sport = :$p or dport = :$p )" 2>/dev/null) ]]; then
			USED_PORT[$p]=1
			printf -v "$1" '%s' "$p"
			return
		fi
	done
	die "no free loopback port found"
}

# start NAME CMD... runs CMD in the background with its output in $WORK/NAME.log.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	local pid=$!
	PIDS+=("$pid")
	PID_OF[$name]=$pid
}

# wait_ready NAME CHECK... retries CHECK for up to 10s while NAME runs.
wait_ready() {
	local name=$1
	shift
	for _ in $(seq 100); do
		if ! kill -0 "${PID_OF[$name]}" 2>/dev/null; then
			echo "--- $WORK/$name.log:" >&2
			tail -20 "$WORK/$name.log" >&2 || true
			die "$name exited during startup"
		fi
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "--- $WORK/$name.log:" >&2
	tail -20 "$WORK/$name.log" >&2 || true
	die "$name not ready after 10s (check: $*)"
}

# cpu_ticks NAME prints utime+stime (clock ticks) of NAME's process and its
# children (nginx's worker).
cpu_ticks() {
	local pid=${PID_OF[$1]} p total=0 f
	for p in $pid $(pgrep -P "$pid" || true); do
		f=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		f=${f##*) } # the command name may hold spaces: cut after it
		# fields 14 and 15 of stat are the 12th and 13th after the name
		total=$((total + $(awk '{print $12 + $13}' <<<"$f")))
	done
	echo "$total"
}

# median of the numbers on stdin ("-" and "nan" ignored; "-" if none)
median() {
	grep -Ev '^(-|nan|)$' | sort -g | awk '{v[NR]=$1} END{
		if (NR == 0) { print "-"; exit }
		if (NR % 2) m = v[(NR+1)/2]; else m = (v[NR/2] + v[NR/2+1]) / 2
		print m }'
}

# stop_pids PID... sends TERM to each PID in the order given, waits up to 5 s
# for all of them to exit, then KILLs those left.
stop_pids() {
	local pid alive
	for pid; do kill -TERM "$pid" 2>/dev/null || true; done
	for _ in $(seq 50); do
		alive=0
		for pid; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for pid; do kill -KILL "$pid" 2>/dev/null || true; done
}

# stop NAME stops one process start ran and waits for it, so that all it had
# to write at exit is in $WORK/NAME.log; stop_started then leaves it alone.
stop() {
	local pid=${PID_OF[$1]} i
	stop_pids "$pid"
	wait "$pid" 2>/dev/null || true
	for i in "${!PIDS[@]}"; do
		[[ ${PIDS[i]} != "$pid" ]] || unset 'PIDS[i]'
	done
	PIDS=("${PIDS[@]}")
}

# stop_started stops the processes start ran (and stop did not), last first.
stop_started() {
	local i last_first=()
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do last_first+=("${PIDS[i]}"); done
	((${#last_first[@]} == 0)) || stop_pids "${last_first[@]}"
	wait 2>/dev/null || true
}
