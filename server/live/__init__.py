"""Live transcription over WebSocket (/v1/realtime): see server/live/session.py.

segmenter.py  energy VAD + endpointing: PCM in, speech start / partial due / utterance end
protocol.py   the OpenAI Realtime transcription events we read and write
hub.py        stream limits (per tenant, in total) and the streams' metrics
session.py    one live stream: its utterances become ordinary batcher Work items
errors.py     the stream's error kinds, each with its stable code
"""
