#!/usr/bin/env bash
# Ingest the demo corpus into embedded Chroma and ask the same question as different users.
set -euo pipefail
cd "$(dirname "$0")/.."
RAG=".venv/bin/rag-app"

echo "== Ingesting demo/corpus (incremental: a second run embeds nothing) =="
"$RAG" ingest demo/corpus

Q="How many weeks of paid parental leave do I get?"
for user in alice dave frank; do
  echo
  echo "== $user asks: $Q =="
  "$RAG" query "$Q" --user "$user" -k 3
done

echo
echo "== carol (finance) and bob (engineering) search for budget figures =="
"$RAG" query "FY2025 budget for robotics R&D" --user carol -k 3
"$RAG" query "FY2025 budget for robotics R&D" --user bob -k 3
echo
echo "Try your own: $RAG query \"...\" --user <name> [--filter '{\"category\": \"hr\"}'] [--json]"
echo "Users: $RAG users"
