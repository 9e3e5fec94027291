/* The DPDK headers overlink binds to, plus a few accessors for what is not a function. */
#include <rte_config.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>

/* rte_errno is a thread-local variable, which bindgen cannot bind: read it through a function. */
static inline int overlink_rte_errno(void) { return rte_errno; }
