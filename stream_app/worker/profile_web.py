"""`GET /profiles/{person}`: a person's one_id, identifiers and tags, live.

`person` is a one_id, or an identifier key (`member_id:M1`; phones and emails as their hashes,
which `stream-app profile` computes). An identifier is looked up in this worker's replica of the
identifier map and redirected to its one_id. A one_id is answered by the worker that owns its tag
partition; any other worker forwards the request there.

Faust's `table_route` is not used: it hashes the table's JSON-encoded key, while the tag state is
partitioned like `stream-app-person-events`, by the raw one_id.
"""

from __future__ import annotations

from urllib.parse import quote

import faust
from faust.web import Request, Response, View

from stream_app.worker.identity_replica import IdentityMapReplica
from stream_app.worker.person_stage import PersonStage


async def _forwarded(app: faust.App, view: View, request: Request, topic: str, key: bytes) -> Response | None:
    """The owner's answer when another worker owns `key`'s partition of `topic`, else None."""
    dest = app.assignor.key_store(topic, key)
    here = app.conf.canonical_url
    if (dest.host, dest.port) == (here.host, here.port):
        return None
    url = request.url.with_host(dest.host).with_port(int(dest.port))
    async with app.http_client.get(url) as response:
        body = await response.read()
        return view.bytes(body, status=response.status, content_type=response.content_type)


def register_profile_views(app: faust.App, tags: PersonStage, replica: IdentityMapReplica) -> None:
    class ProfileView(View):
        async def get(self, request: Request, person: str) -> Response:
            if not person.startswith("p_"):
                one_id = replica.get(person)
                if one_id is None:
                    return self.json({"error": f"no person is known by {person!r}"}, status=404)
                target = f"/profiles/{quote(one_id, safe='')}"
                return self.json({"one_id": one_id}, status=307, headers={"Location": target})
            topic = tags.states.changelog_topic.get_topic_name()
            forwarded = await _forwarded(app, self, request, topic, person.encode())
            if forwarded is not None:
                return forwarded
            survivor = tags.aliases.get(person)
            if survivor is not None:  # merged: its survivor may live on another partition
                target = f"/profiles/{quote(survivor, safe='')}"
                return self.json({"one_id": survivor}, status=307, headers={"Location": target})
            profile = tags.profile(person)
            if profile is None:
                return self.json({"error": f"no tags for {person!r}"}, status=404)
            profile["identifiers"] = sorted(k for k, v in replica.owners.items() if v == profile["one_id"])
            return self.json(profile)

    app.page("/profiles/{person}")(ProfileView)
