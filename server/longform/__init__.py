"""Long-form transcription: audio longer than one window, cut, batched and stitched.

    windows.py  where to cut: windows of at most `window_s`, cut at the quietest frame near
                each nominal cut, each window with `margin_s` of overlap on either side
    stitch.py   window transcripts -> one transcript: a word belongs to the window whose
                own core region holds its centre (no dropped or doubled words at cuts)
    runner.py   windows through the batcher in order, a few in flight per request
    budget.py   a global cap on decoded samples held by requests in progress
Nothing here knows HTTP; the service (server/service.py) wires it, the routes stream it.
"""
