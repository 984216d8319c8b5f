"""Trigger rules: coupons and guide alerts decided per person, under the contact policy.

Pure: `RuleEngine` takes a person's rule state, an event (or the passing of event time) and their
tags, and returns the new state and what to emit or suppress. No Kafka, no Faust.
"""
