/*
 * The demo's crashing program: a small order parser with a real bug. It reads orders of the form
 * "<order-id> <customer-id> <amount>" and prices each with the customer's discount. An order for
 * a customer that is not in the table makes find_customer() return NULL, which price_order()
 * dereferences: SIGSEGV, as in many a production incident. Each order also loads a 4 MiB price
 * list that is never freed and waits 300 ms on a (pretend) pricing service, so the process lives
 * long enough for its memory and CPU to be seen growing before the crash.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct customer {
  int id;
  const char *name;
  double discount;
};

static const struct customer customers[] = {
    {101, "ada", 0.10},
    {102, "grace", 0.05},
    {103, "linus", 0.00},
};

static const struct customer *find_customer(int id) {
  for (size_t i = 0; i < sizeof customers / sizeof customers[0]; i++) {
    if (customers[i].id == id) return &customers[i];
  }
  return NULL;
}

static double price_order(int customer_id, double amount) {
  const struct customer *c = find_customer(customer_id);
  /* The bug: no check for an unknown customer. */
  return amount * (1.0 - c->discount);
}

int main(int argc, char **argv) {
  FILE *in = argc > 1 ? fopen(argv[1], "r") : stdin;
  if (in == NULL) {
    perror(argv[1]);
    return 1;
  }
  char order[64];
  int customer;
  double amount;
  while (fscanf(in, "%63s %d %lf", order, &customer, &amount) == 3) {
    size_t price_list_bytes = 4u << 20;
    char *price_list = malloc(price_list_bytes);
    if (price_list == NULL) return 1;
    memset(price_list, customer & 0xff, price_list_bytes);
    usleep(300 * 1000);
    printf("order %s: customer %d, amount %.2f\n", order, customer, amount);
    fflush(stdout);
    printf("order %s: %.2f\n", order, price_order(customer, amount));
    fflush(stdout);
  }
  return 0;
}
