"""Sends vLLM-shaped traces to slo with the real OpenTelemetry Python SDK.

A gateway (service "gateway") receives each request and calls a vLLM server (service
"vllm", with k8s.* resource attributes); the vLLM span carries gen_ai.* and
gen_ai.latency.* attributes as vLLM's tracing does, plus a prompt that must be redacted.
Times are explicit, so the expected split is exact. Prints the expectation as JSON and
exits non-zero if any export was not acknowledged.
"""

import argparse
import json
import random
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class Recording(SpanExporter):
    """Wraps an exporter and remembers every result."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []
        self.spans = 0

    def export(self, spans):
        result = self.inner.export(spans)
        self.results.append(result)
        if result == SpanExportResult.SUCCESS:
            self.spans += len(spans)
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        # Plain text unless the endpoint is https:// (then the SDK trusts the CA named by
        # OTEL_EXPORTER_OTLP_CERTIFICATE); OTEL_EXPORTER_OTLP_HEADERS carries a token.
        return OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https://"), timeout=10)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.exporter.otlp.proto.http import Compression

    return OTLPSpanExporter(endpoint=endpoint + "/v1/traces", timeout=10, compression=Compression.Gzip)


def provider(resource, protocol, endpoint):
    rec = Recording(exporter(protocol, endpoint))
    tp = TracerProvider(resource=Resource.create(resource))
    tp.add_span_processor(BatchSpanProcessor(rec, max_export_batch_size=64, schedule_delay_millis=200))
    return tp, rec


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--protocol", choices=["grpc", "http"], required=True)
    ap.add_argument("--traces", type=int, default=40)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--model", default="llama-70b")
    args = ap.parse_args()
    rnd = random.Random(args.seed)

    gw_tp, gw_rec = provider({"service.name": "gateway"}, args.protocol, args.endpoint)
    vllm_tp, vllm_rec = provider(
        {
            "service.name": "vllm",
            "k8s.namespace.name": "inference",
            "k8s.deployment.name": "llama-70b",
            "k8s.replicaset.name": "llama-70b-7d9f",
            "k8s.pod.name": "llama-70b-7d9f-abcde",
            "k8s.node.name": "gpu-node-1",
        },
        args.protocol,
        args.endpoint,
    )
    gw = gw_tp.get_tracer("gateway")
    vllm = vllm_tp.get_tracer("vllm")
    base = time.time_ns() - 600 * 1_000_000_000
    expected = []
    for i in range(args.traces):
        start = base + i * 1_000_000_000
        queue = rnd.randint(5, 900) / 1000.0
        prefill = rnd.randint(10, 200) / 1000.0
        decode = rnd.randint(50, 2000) / 1000.0
        overhead_ms = rnd.randint(2, 40)
        server_start = start + overhead_ms * 500_000
        server_end = server_start + int((queue + prefill + decode) * 1e9)
        end = server_end + overhead_ms * 500_000
        root = gw.start_span("POST /v1/chat/completions", kind=trace.SpanKind.SERVER, start_time=start)
        ctx = trace.set_span_in_context(root)
        child = vllm.start_span(
            "llm_request",
            context=ctx,
            kind=trace.SpanKind.SERVER,
            start_time=server_start,
            attributes={
                "gen_ai.response.model": args.model,
                "gen_ai.request.id": f"req-{i}",
                "gen_ai.usage.prompt_tokens": rnd.randint(100, 4000),
                "gen_ai.usage.completion_tokens": rnd.randint(10, 800),
                "gen_ai.latency.time_in_queue": queue,
                "gen_ai.latency.time_in_model_prefill": prefill,
                "gen_ai.latency.time_in_model_decode": decode,
                "gen_ai.latency.time_to_first_token": queue + prefill,
                "gen_ai.latency.e2e": queue + prefill + decode,
                "gen_ai.prompt": "my secret prompt text",
            },
        )
        child.end(end_time=server_end)
        root.end(end_time=end)
        expected.append(
            {
                "trace_id": format(root.get_span_context().trace_id, "032x"),
                "duration_ms": (end - start) / 1e6,
                "queue_ms": queue * 1000.0,
                "compute_ms": (prefill + decode) * 1000.0,
                "ttft_ms": (queue + prefill) * 1000.0,
            }
        )
    gw_tp.shutdown()
    vllm_tp.shutdown()
    ok = all(r == SpanExportResult.SUCCESS for r in gw_rec.results + vllm_rec.results)
    json.dump({"ok": ok, "acked_spans": gw_rec.spans + vllm_rec.spans, "requests": expected}, sys.stdout)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
