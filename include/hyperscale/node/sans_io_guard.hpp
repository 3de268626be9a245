// The sans-IO guard: force-included (-include) into every source of the role libraries (swim,
// cluster, manager, worker; hs_role_cpp_args in src/node/meson.build). It poisons identifiers of
// real I/O, so that including <uv.h>, <liburing.h>, <sys/socket.h>, <sys/epoll.h> or
// <arpa/inet.h> in role code, or calling these functions, fails to compile ("attempt to use
// poisoned"). Roles reach the world only through node::Context (docs/architecture.md).
//
// Only identifiers that no standard library, fmt or base header mentions are listed (a poisoned
// name is an error even inside a system header); tests/layering checks that a clean role-like
// source still compiles and that each real-I/O header is rejected. Threads, mutexes and atomics
// cannot be poisoned this way (libstdc++ uses those names itself): the layering test greps for
// their headers instead.
#pragma once

// libuv: loops, handles, requests, the thread pool.
#pragma GCC poison uv_run uv_loop_init uv_loop_close uv_default_loop uv_tcp_init uv_tcp_bind uv_tcp_connect
#pragma GCC poison uv_udp_init uv_udp_bind uv_udp_send uv_udp_recv_start uv_timer_init uv_timer_start
#pragma GCC poison uv_async_init uv_async_send uv_poll_init uv_fs_open uv_fs_write uv_fs_fsync uv_queue_work
#pragma GCC poison uv_thread_create
// liburing.
#pragma GCC poison io_uring_queue_init io_uring_queue_exit io_uring_get_sqe io_uring_submit io_uring_wait_cqe
#pragma GCC poison io_uring_peek_cqe io_uring_prep_write io_uring_prep_writev io_uring_prep_fsync
// Sockets, name resolution, polling, durable file writes.
#pragma GCC poison sendto recvfrom sendmsg recvmsg getaddrinfo inet_pton inet_ntop
#pragma GCC poison epoll_create epoll_create1 epoll_ctl epoll_wait
