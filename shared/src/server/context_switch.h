/*
 * context_switch.h - switching a thread between stacks: the one machine-
 * specific piece of the event-loop core (context_switch.c).
 *
 * A request on the event loop runs on a coroutine: a stack of its own that
 * the loop thread jumps onto and back from at every wait. glibc's
 * swapcontext() does that, but saves and restores the signal mask with a
 * system call on every switch (rt_sigprocmask: about six per proxied
 * request). A loop thread's signal mask never changes, so the kit switches
 * with a few instructions instead: push the callee-saved registers, swap
 * the stack pointer, pop them. x86-64 and arm64 have that switch; any other
 * architecture falls back to ucontext.
 *
 * Threads: a context belongs to the thread that switches to it.
 */
#ifndef KIT_CONTEXT_SWITCH_H
#define KIT_CONTEXT_SWITCH_H

#include <stddef.h>

#if defined(__x86_64__) || defined(__aarch64__)
#define KIT_CONTEXT_ASM 1
#else
#define KIT_CONTEXT_ASM 0
#include <ucontext.h>
#endif

struct kit_context {
#if KIT_CONTEXT_ASM
	void *stack_pointer;         /* where its registers were saved      */
#else
	ucontext_t ucontext;
#endif
};

/* Makes the next switch to context start entry() on stack[0..size).
 * entry must never return: it ends by switching away for good. */
void kit_context_prepare(struct kit_context *context, char *stack, size_t size,
			 void (*entry)(void));

/* Saves the running code's registers in from and continues where to left
 * off (or at its entry). Returns when something switches back to from. */
void kit_context_switch(struct kit_context *from, struct kit_context *to);

#endif
