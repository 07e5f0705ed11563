"""The REST service and web page: the app (FastAPI, cifake.serve.app) over a Detector, its limits and access
(limits), how `cifake serve` launches it (launch), and Ray Serve (ray_serve)."""
