import ctypes, socket, sys, time
ctypes.CDLL(None).prctl(15, b'spk_cli', 0, 0, 0)
s = socket.create_connection((sys.argv[1], int(sys.argv[2])))
for i in range(int(sys.argv[3])):
    s.sendall(b'a' * 1000); time.sleep(0.01)
s.close(); print('trickle done')
