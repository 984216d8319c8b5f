"""Audiences (人群): who holds a condition over their tags now, in event time. Pure: no Faust."""

from stream_app.audiences.engine import AudienceEngine, AudienceError, Change, audience_problems

__all__ = ["AudienceEngine", "AudienceError", "Change", "audience_problems"]
