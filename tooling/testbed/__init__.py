"""The testbed: edge hosts emulated on one machine (network namespaces, shaped links, CPU quotas)."""
