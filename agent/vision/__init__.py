"""On-device perception: camera frame -> ``agent.observation.Observation``.

``pipeline.Vision`` ties together ``detector`` (BlazeFace), ``smile`` (the smile
CNN), ``posture`` (standing vs seated against a learnt seat) and presence; ``rate``
picks the frame rate; ``scenes`` composes labelled test sequences. Only numpy,
OpenCV and onnxruntime run here; the package import itself stays light (the CLI
imports it to register commands).
"""
