"""The push path: PassEntry's ``passScanned`` webhooks, verified, made durable in an inbox
topic, and published by the owner of the source in the same transactions as polled scans."""
