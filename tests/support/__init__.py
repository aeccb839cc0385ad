"""What the tests share besides fixtures: processes, polling, Redis databases, API calls, images."""
