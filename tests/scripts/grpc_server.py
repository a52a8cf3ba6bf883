# A gRPC server of /shop.Cart/Add (raw bytes, no protobuf) on gRPC's C core: the request
# `missing` is answered NOT_FOUND, any other OK. Prints `ready PORT` once listening.
# Run by tests/tests/http2.rs and by the kernel matrix's smoke test (xtask/src/kernels).
import grpc
from concurrent import futures
def add(request, context):
    if request == b"missing":
        context.abort(grpc.StatusCode.NOT_FOUND, "no such cart")
    return b"added"
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
    "shop.Cart", {"Add": grpc.unary_unary_rpc_method_handler(add)}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("ready", port, flush=True)
server.wait_for_termination()
