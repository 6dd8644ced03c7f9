"""tcpwdist: simple TCP write size distribution by process, for Linux, using bpftrace."""

__version__ = "0.1.0"
