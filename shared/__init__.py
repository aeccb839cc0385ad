"""Code shared by the API (`web/`) and the workers (`worker/`): settings, errors, stores."""
