# bench/lib.sh — what bench/compare.sh and bench/fairness.sh share: ports,
# processes and their CPU time, medians. Sourced after the script defines
# die, WORK, PIDS and PID_OF.

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

# stop_started stops the processes start ran, last first: TERM, up to 5 s,
# then KILL.
stop_started() {
	local i pid
	for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
		kill -TERM "${PIDS[i]}" 2>/dev/null || true
	done
	for _ in $(seq 50); do
		local alive=0
		for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || break
		sleep 0.1
	done
	for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
