"""`rag-server keys create|list|revoke` and `rag-server projects create|list|budget|assign`."""

from __future__ import annotations

import typer

from rag_server.api.schemas import KeyOut
from rag_server.cli._common import database, print_json, reports_errors, settings

keys_app = typer.Typer(help="API keys: shown once, stored hashed, each with a project, a role and domains.")
projects_app = typer.Typer(help="Projects: they own domains and keys, and have a monthly budget.")


@keys_app.command("create")
@reports_errors
def create(
    project: str = typer.Option("default", "--project", "-p", help="The project the key belongs to."),
    name: str = typer.Option(..., "--name", "-n", help="What the key is for (shown in listings)."),
    role: str = typer.Option(
        "reader", help="reader: ask, search, feedback; owner: also ingest, delete, keys."
    ),
    domain: list[str] = typer.Option(None, "--domain", "-d", help="A domain it may use (repeat); none: all."),
    rpm: int = typer.Option(
        None, "--rpm", min=1, help="Requests per minute (default RAG_KEY_REQUESTS_PER_MINUTE)."
    ),
    tpm: int = typer.Option(
        None, "--tpm", min=1, help="Tokens per minute (default RAG_KEY_TOKENS_PER_MINUTE)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the key and its details as JSON."),
) -> None:
    """Create a key and print it: this is the only time it is shown."""
    from rag_server.keys import create_key

    current = settings()
    with database(current) as pool, pool.connection() as conn:
        created = create_key(
            conn,
            project,
            name,
            role,  # type: ignore[arg-type]  # checked by create_key
            domain or None,
            rpm or current.key_requests_per_minute or None,
            tpm or current.key_tokens_per_minute or None,
        )
    if as_json:
        print_json(KeyOut.of(created.info, created.key).model_dump(mode="json"))
        return
    typer.echo(created.key)
    typer.echo(
        f"key {created.info.id} ({created.info.role}) of project {project!r}: shown once, keep it secret; "
        "send it as 'Authorization: Bearer KEY'",
        err=True,
    )


@keys_app.command("list")
@reports_errors
def listed(
    project: str = typer.Option(None, "--project", "-p", help="Only this project's keys."),
    as_json: bool = typer.Option(False, "--json", help="Print the keys as JSON."),
) -> None:
    """Every key (revoked ones too), by prefix: never the keys themselves."""
    from rag_server.keys import list_keys

    with database(settings()) as pool, pool.connection() as conn:
        found = [KeyOut.of(info) for info in list_keys(conn, project)]
    if as_json:
        print_json([key.model_dump(mode="json") for key in found])
        return
    if not found:
        typer.echo("no key yet (rag-server keys create --name NAME)")
        return
    typer.echo("| id | project | name | prefix | role | domains | rpm | tpm | created | revoked |")
    typer.echo("|---|---|---|---|---|---|---|---|---|---|")
    for key in found:
        domains = ", ".join(key.domains) if key.domains else "all"
        revoked = f"{key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else ""
        typer.echo(
            f"| {key.id} | {key.project} | {key.name} | {key.prefix}… | {key.role} | {domains} "
            f"| {key.requests_per_minute or ''} | {key.tokens_per_minute or ''} | {key.created_at:%Y-%m-%d %H:%M} "
            f"| {revoked} |"
        )


@keys_app.command("revoke")
@reports_errors
def revoke(key_id: int = typer.Argument(..., min=1, help="The key's id (rag-server keys list).")) -> None:
    """Revoke a key: refused (401) from the next request on."""
    from rag_server.keys import revoke_key

    with database(settings()) as pool, pool.connection() as conn:
        info = revoke_key(conn, key_id)
    typer.echo(f"key {info.id} ({info.prefix}…, {info.name}) of project {info.project!r} revoked")


@projects_app.command("create")
@reports_errors
def create_project(
    name: str = typer.Argument(..., help="The project's name (lower-case letters, digits, '-', '_')."),
    budget: float = typer.Option(None, "--budget", min=0, help="Monthly budget in dollars (none: no limit)."),
    alert: float = typer.Option(0.8, "--alert", min=0.01, max=1, help="Share of the budget that warns."),
) -> None:
    """Create a project."""
    from rag_server.projects import create_project as create

    with database(settings()) as pool, pool.connection() as conn:
        project = create(conn, name, budget, alert)
    typer.echo(f"project {project.name!r} created (id {project.id})")


@projects_app.command("list")
@reports_errors
def list_projects(as_json: bool = typer.Option(False, "--json", help="Print the projects as JSON.")) -> None:
    """Every project with its budget and this month's spend."""
    from rag_server.limits import budget_status
    from rag_server.projects import list_projects as listed_projects

    with database(settings()) as pool, pool.connection() as conn:
        rows = [(project, budget_status(conn, project.id)) for project in listed_projects(conn)]
    if as_json:
        print_json(
            [
                {
                    "name": project.name,
                    "budget_usd": status.budget_usd,
                    "alert_at": status.alert_at,
                    "spent_usd": status.spent_usd,
                    "reserved_usd": status.reserved_usd,
                    "alert": status.alert,
                }
                for project, status in rows
            ]
        )
        return
    typer.echo("| project | monthly budget | spent this month | alert |")
    typer.echo("|---|---|---|---|")
    for project, status in rows:
        budget = f"${status.budget_usd:.2f}" if status.budget_usd is not None else "none"
        typer.echo(
            f"| {project.name} | {budget} | ${status.spent_usd:.4f} | {'ALERT' if status.alert else ''} |"
        )


@projects_app.command("budget")
@reports_errors
def budget(
    name: str = typer.Argument(..., help="The project."),
    usd: float = typer.Option(None, "--usd", min=0, help="Monthly budget in dollars; omit to remove it."),
    alert: float = typer.Option(None, "--alert", min=0.01, max=1, help="Share of the budget that warns."),
) -> None:
    """Set or remove a project's monthly budget (refusal with 402 past it)."""
    from rag_server.projects import set_budget

    with database(settings()) as pool, pool.connection() as conn:
        project = set_budget(conn, name, usd, alert)
    shown = f"${project.monthly_budget_usd}" if project.monthly_budget_usd is not None else "no budget"
    typer.echo(f"project {project.name!r}: {shown} a month, alert at {project.budget_alert:.0%}")


@projects_app.command("assign")
@reports_errors
def assign(
    name: str = typer.Argument(..., help="The project."),
    domain: str = typer.Option(..., "--domain", "-d", help="The domain to move into it."),
) -> None:
    """Move a domain (for example one ingested by the CLI into 'default') to a project."""
    from rag_server.projects import assign_domain, get_project

    with database(settings()) as pool, pool.connection() as conn:
        assign_domain(conn, domain, get_project(conn, name).id)
    typer.echo(f"domain {domain!r} now belongs to project {name!r}")
