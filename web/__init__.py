"""The Flask API: validates requests and enqueues work by task name. Never imports TensorFlow."""
