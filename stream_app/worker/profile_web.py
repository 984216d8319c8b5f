"""`GET /profiles/{person}`: a person's one_id, identifiers and tags, live.

`person` is a one_id, or an identifier key (`member_id:M1`; phones and emails as their hashes,
which `stream-app profile` computes). An identifier is looked up in this worker's replica of the
identifier map and redirected to its one_id; a one_id is answered by the worker that owns its tag
partition (Faust `table_route` forwards the request there).
"""

from __future__ import annotations

from urllib.parse import quote

import faust
from faust.web import Request, Response, View

from stream_app.worker.identity_replica import IdentityMapReplica
from stream_app.worker.tag_stage import TagStage


def register_profile_views(app: faust.App, tags: TagStage, replica: IdentityMapReplica) -> None:
    class ProfileView(View):
        @app.table_route(table=tags.states, match_info="person")
        async def get(self, request: Request, person: str) -> Response:
            if not person.startswith("p_"):
                one_id = replica.get(person)
                if one_id is None:
                    return self.json({"error": f"no person is known by {person!r}"}, status=404)
                target = f"/profiles/{quote(one_id, safe='')}"
                return self.json({"one_id": one_id}, status=307, headers={"Location": target})
            profile = tags.profile(person)
            if profile is None:
                return self.json({"error": f"no tags for {person!r}"}, status=404)
            profile["identifiers"] = sorted(k for k, v in replica.owners.items() if v == profile["one_id"])
            return self.json(profile)

    app.page("/profiles/{person}")(ProfileView)
