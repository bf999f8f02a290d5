/*
 * The demo's crashing program: a small order parser with a real bug. It reads orders of the form
 * "<order-id> <customer-id> <amount>" and prices each with the customer's discount. An order for
 * a customer that is not in the table makes find_customer() return NULL, which price_order()
 * dereferences: SIGSEGV, as in many a production incident.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    printf("order %s: %.2f\n", order, price_order(customer, amount));
    fflush(stdout);
  }
  return 0;
}
