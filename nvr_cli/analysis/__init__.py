"""What is in a frame: motion by frame differencing, objects (TFLite), when and where the detector
confirms an event, QR codes; plus model download and frame sampling for `detect` and `qr`.
"""
