"""HTTP views on the live identity state, served by the worker that owns the linker partition.

    GET /identity/graph/{person}   person = one_id or identifier key (phone/email values hashed)
    GET /identity/hubs             identifiers whose links were refused, most people first
    GET /identity/stats            component-size distribution

Any worker answers: `table_route` forwards the request to the owner of the identity tables.
Raw phones and emails never appear in a URL: `stream-app graph` hashes them first.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View

from stream_app.identity.graph import component_stats, graph_json, hubs, person_graph
from stream_app.identity.store import MappingIdentityStore


def register_identity_views(
    app: faust.App,
    routing_table: faust.types.CollectionT,
    store: MappingIdentityStore,
) -> None:
    def find(person: str) -> str | None:
        if person.startswith("p_"):
            return store.current(person) if store.profile(store.current(person)) else None
        return store.owner(person)

    class GraphView(View):
        @app.table_route(table=routing_table, match_info="person")
        async def get(self, request: Request, person: str) -> Response:
            one_id = find(person)
            profile = store.profile(one_id) if one_id else None
            if profile is None:
                return self.json({"error": f"no person for {person!r}"}, status=404)
            body: dict[str, Any] = {"one_id": profile.one_id, "graph": graph_json(person_graph(profile))}
            return self.json(body)

    class HubsView(View):
        @app.table_route(table=routing_table, exact_key="hubs")
        async def get(self, request: Request) -> Response:
            return self.json(hubs(store.refusals(), limit=int(request.query.get("limit", 50))))

    class StatsView(View):
        @app.table_route(table=routing_table, exact_key="stats")
        async def get(self, request: Request) -> Response:
            return self.json(component_stats(store.profiles()))

    app.page("/identity/graph/{person}")(GraphView)
    app.page("/identity/hubs")(HubsView)
    app.page("/identity/stats")(StatsView)
