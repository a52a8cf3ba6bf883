#!/bin/bash
# Interleaved rounds: none / empty aya raw_tp x7 / aya raw_tp + ringbuf record per transition / bpftrace design script.
B=/work/spike/target/release/connbench
run() { ip netns exec spk_b $B "$@"; }
for round in 1 2 3 4 5; do
  for cond in none empty ringbuf bpftrace; do
    case $cond in
      none) ;;
      empty) EMPTY=1 /work/spike/target/release/probe-user 60 >/dev/null 2>&1 & P=$!; sleep 1.5;;
      ringbuf) ONLY=raw_set_state,raw_retransmit,raw_send_reset,raw_receive_reset /work/spike/target/release/probe-user 60 >/dev/null 2>&1 & P=$!; sleep 1.5;;
      bpftrace) bpftrace /work/spike/tools/cost.bt >/tmp/spk_cost.out 2>&1 & P=$!; sleep 4;;
    esac
    c=$(run conn 20000); b=$(run bulk 300000000 65536); s=$(run bulk 100000000 1024)
    echo "round=$round cond=$cond $c | $b | $s"
    if [ $cond != none ]; then kill -INT $P; wait $P 2>/dev/null; fi
  done
done
