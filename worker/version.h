#ifndef PB_VERSION_H
#define PB_VERSION_H

#define PB_VERSION  "0.1.0"

#endif /* PB_VERSION_H */
