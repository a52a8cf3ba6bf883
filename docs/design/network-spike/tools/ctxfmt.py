import sys, re
# Collapse bpftrace EV blocks: mark SOFTIRQ/TIMER context from kernel stack frames.
blk = []
def flush():
    if not blk: return
    head = blk[0].rstrip(); st = ' '.join(l.strip() for l in blk[1:])
    tag = []
    if 'handle_softirqs' in st or '__do_softirq' in st or 'do_softirq' in st: tag.append('SOFTIRQ')
    if 'run_timer_softirq' in st or 'tcp_write_timer' in st or 'tcp_retransmit_timer' in st or 'call_timer_fn' in st: tag.append('TIMER')
    if 'net_rx_action' in st or '__netif_receive_skb' in st or 'ip_rcv' in st or 'ipv6_rcv' in st: tag.append('RX')
    if 'do_syscall_64' in st: tag.append('SYSCALL')
    m = re.findall(r'(__x64_sys_\w+|__sys_\w+|tcp_\w+|inet_\w+)\+', st)
    print(head.replace('EV ', ''), '[' + ','.join(tag) + ']', '<' + ' '.join(dict.fromkeys(m[:6])) + '>')
    blk.clear()
for line in sys.stdin:
    if line.startswith('EV '): flush(); blk.append(line)
    elif blk: blk.append(line)
flush()
