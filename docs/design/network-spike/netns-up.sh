#!/bin/sh
# Two namespaces joined by a veth pair, IPv4 + IPv6. Client side: spk_a, server side: spk_b.
set -e
ip netns add spk_a
ip netns add spk_b
ip link add spk_va type veth peer name spk_vb
ip link set spk_va netns spk_a
ip link set spk_vb netns spk_b
ip -n spk_a addr add 10.200.0.1/24 dev spk_va
ip -n spk_b addr add 10.200.0.2/24 dev spk_vb
ip -n spk_a addr add fd00:200::1/64 dev spk_va nodad
ip -n spk_b addr add fd00:200::2/64 dev spk_vb nodad
for n in spk_a spk_b; do ip -n $n link set lo up; done
ip -n spk_a link set spk_va up
ip -n spk_b link set spk_vb up
ip netns exec spk_a sysctl -qw net.ipv4.tcp_syn_retries=1
