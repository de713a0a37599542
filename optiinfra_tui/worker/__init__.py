"""What a worker process does: take tasks off the queue, run collections, record runs,
claim schedule slots, recover lost work, check backends and report its state.

Above settings, rows, collectors and storage; below the interfaces (cli, tui, headless).
"""
