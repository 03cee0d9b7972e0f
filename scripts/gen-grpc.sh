#!/usr/bin/env bash
# Regenerate the Python modules of the Open Inference Protocol's gRPC service from its .proto
# (services/orchestrator/grpcv2/); needs grpcio-tools (pip install grpcio-tools).
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-.venv/bin/python}"
"$python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. \
  services/orchestrator/grpcv2/grpc_predict_v2.proto
