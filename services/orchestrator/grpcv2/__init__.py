"""Generated protobuf and gRPC modules of the Open Inference Protocol (scripts/gen-grpc.sh)."""
