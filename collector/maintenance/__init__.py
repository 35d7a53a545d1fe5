"""Jobs that run beside the write path: threshold evaluation of settled traces into snapshots."""
