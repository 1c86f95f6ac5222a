"""Long-form transcription: audio longer than one window, cut, batched and stitched.

    windows.py  where to cut: at pauses, skipping silence; speech with no pause at its
                quietest frame, with `margin_s` of overlap; windows of at most `window_s`
    stitch.py   window transcripts -> one transcript: a word belongs to the window whose
                own core region holds its centre (no dropped or doubled words at cuts)
    tails.py    a window the model stopped early in (Whisper) is followed by one over the rest
    policy.py   which plan a model gets: CTC short windows, Whisper up to its 30 s pass
    budget.py   a global cap on decoded samples held by requests in progress
A request's lifecycle (one pass, or windows) is server/serving/run.py, its windows go
through the batcher in server/serving/window_runner.py; the transcription
service (server/serving/transcription.py) wires both. Nothing here knows HTTP.
"""
