"""Language models: endpoints, structured answers, recordings, and a local model server."""
