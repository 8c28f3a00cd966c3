"""How the keeper sees a chain: JSON-RPC with failover, the block stream, Multicall3 batching."""
