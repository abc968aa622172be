/*
 * context_switch.c - stack switching for the event loop's coroutines
 * (context_switch.h): a dozen instructions on x86-64 and arm64, ucontext
 * elsewhere.
 *
 * The switch follows each architecture's C calling convention: what a
 * called function must preserve (the callee-saved registers) is pushed on
 * the current stack, the stack pointer is stored in `from` and loaded from
 * `to`, and the same registers are popped off the new stack. Caller-saved
 * registers need no saving: the compiler already treats
 * kit_context_switch() as a call that may change them. Floating-point
 * control state (x87 control word, MXCSR, FPCR) is left alone: the kit
 * never changes it, so it is the same on every stack.
 *
 * A new context's stack is laid out as if it had been switched away from
 * just before entry(): zeroed registers, and entry as the return address,
 * so the first switch to it "returns" into entry().
 */
#include <stdint.h>

#include "server/context_switch.h"

#if defined(__x86_64__)
/* void kit_context_swap(void **save, void *load): rdi = save, rsi = load.
 * Saved: rbp, rbx, r12-r15 (System V AMD64 ABI). */
__asm__(
	".text\n"
	".globl kit_context_swap\n"
	".hidden kit_context_swap\n"
	".type kit_context_swap, @function\n"
	"kit_context_swap:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size kit_context_swap, .-kit_context_swap\n");
#define SAVED_WORDS 6      /* the registers above */
#define ENTRY_SLOT 6       /* the return address, after them */
#elif defined(__aarch64__)
/* x0 = save, x1 = load. Saved: x19-x28, x29 (frame), x30 (link), d8-d15
 * (AAPCS64): 20 registers, 160 bytes, keeping sp 16-byte aligned. */
__asm__(
	".text\n"
	".globl kit_context_swap\n"
	".hidden kit_context_swap\n"
	".type kit_context_swap, %function\n"
	"kit_context_swap:\n"
	"	sub sp, sp, #160\n"
	"	stp x19, x20, [sp, #0]\n"
	"	stp x21, x22, [sp, #16]\n"
	"	stp x23, x24, [sp, #32]\n"
	"	stp x25, x26, [sp, #48]\n"
	"	stp x27, x28, [sp, #64]\n"
	"	stp x29, x30, [sp, #80]\n"
	"	stp d8, d9, [sp, #96]\n"
	"	stp d10, d11, [sp, #112]\n"
	"	stp d12, d13, [sp, #128]\n"
	"	stp d14, d15, [sp, #144]\n"
	"	mov x9, sp\n"
	"	str x9, [x0]\n"
	"	mov sp, x1\n"
	"	ldp x19, x20, [sp, #0]\n"
	"	ldp x21, x22, [sp, #16]\n"
	"	ldp x23, x24, [sp, #32]\n"
	"	ldp x25, x26, [sp, #48]\n"
	"	ldp x27, x28, [sp, #64]\n"
	"	ldp x29, x30, [sp, #80]\n"
	"	ldp d8, d9, [sp, #96]\n"
	"	ldp d10, d11, [sp, #112]\n"
	"	ldp d12, d13, [sp, #128]\n"
	"	ldp d14, d15, [sp, #144]\n"
	"	add sp, sp, #160\n"
	"	ret\n"
	".size kit_context_swap, .-kit_context_swap\n");
#define SAVED_WORDS 20     /* 160 bytes */
#define ENTRY_SLOT 11      /* x30, the link register: where ret goes */
#endif

#if KIT_CONTEXT_ASM
void kit_context_swap(void **save, void *load);

void kit_context_prepare(struct kit_context *context, char *stack, size_t size,
			 void (*entry)(void))
{
	/* The ABIs want a 16-byte aligned stack. */
	uintptr_t top = (uintptr_t)(stack + size) & ~(uintptr_t)15;
	void **sp = (void **)top;

#if defined(__x86_64__)
	/* entry() starts as if called: its return address (never used) on
	 * the stack, which leaves rsp 8 past a 16-byte boundary. */
	*--sp = NULL;
	*--sp = (void *)entry;  /* popped by ret */
	sp -= SAVED_WORDS;
#else
	sp -= SAVED_WORDS;
	sp[ENTRY_SLOT] = (void *)entry; /* loaded into x30, then ret */
#endif
	for (int i = 0; i < SAVED_WORDS; i++) {
		if (i != ENTRY_SLOT)
			sp[i] = NULL;
	}
	context->stack_pointer = sp;
}

void kit_context_switch(struct kit_context *from, struct kit_context *to)
{
	kit_context_swap(&from->stack_pointer, to->stack_pointer);
}

#else /* any other architecture: glibc's ucontext */

void kit_context_prepare(struct kit_context *context, char *stack, size_t size,
			 void (*entry)(void))
{
	getcontext(&context->ucontext);
	context->ucontext.uc_stack.ss_sp = stack;
	context->ucontext.uc_stack.ss_size = size;
	context->ucontext.uc_link = NULL; /* entry never returns */
	makecontext(&context->ucontext, entry, 0);
}

void kit_context_switch(struct kit_context *from, struct kit_context *to)
{
	swapcontext(&from->ucontext, &to->ucontext);
}
#endif
